"""LRL backends on the CPU: torch against ONNX Runtime and OpenVINO on the same network and input,
in the same run.

    python -m bench.backends --export /tmp/lrl.onnx     # needs the `onnx` package (see below)
    python -m bench.backends --onnx /tmp/lrl.onnx [--repeat 5] [--threads 2]

The input is a real face crop (``smiling``, resized to the LRL's working size). torch runs
float32 eager, float32 compiled with TorchInductor (``model.compiled_lrl``, what CPU replicas of
the service run; compiled before timing) and, where the CPU has hardware bfloat16, bfloat16
autocast; ONNX Runtime runs its CPU provider; OpenVINO runs its CPU plugin once at float32
precision and once at its default precision (bfloat16 on CPUs with AMX). Each backend runs in
its own process and reports its best time and the largest difference of its result (in 1/255
steps) and mask from torch float32.

The export runs in its own process because the `onnx` package needs a newer protobuf than
MediaPipe's: install it apart, e.g. ``pip install --target /tmp/onnxpkgs onnx`` and run the export
with ``PYTHONPATH=/tmp/onnxpkgs``. ONNX Runtime and OpenVINO install as ordinary wheels
(``pip install onnxruntime openvino``); a backend that is not installed is reported as such.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).parent / "results"
PHOTO = Path(__file__).resolve().parents[1] / "data" / "photos" / "smiling.png"


class _LRLGraph(torch.nn.Module):
    """The LRL with plain tensor outputs, as an exporter wants them."""

    def __init__(self, lrl: torch.nn.Module) -> None:
        super().__init__()
        self.lrl = lrl

    def forward(self, image: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.lrl(image, valid)
        return out.result, out.mask


def lrl_input(lrl_size: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """A real face crop at the LRL's working size on its padded canvas, with its valid mask."""
    from PIL import Image

    from model.net.abpn import round_up, working_size

    photo = Image.open(PHOTO).convert("RGB")
    # As the engine sees a face of a large photo: long side at the working size.
    scale = lrl_size / max(photo.height, photo.width)
    h, w = working_size((round(photo.height * scale), round(photo.width * scale)), lrl_size)
    small = np.asarray(photo.resize((w, h), Image.Resampling.BICUBIC), np.float32) / 255.0
    ch, cw = round_up(h, stride), round_up(w, stride)
    image = np.zeros((1, 3, ch, cw), np.float32)
    image[0, :, :h, :w] = small.transpose(2, 0, 1)
    valid = np.zeros((1, 1, ch, cw), np.float32)
    valid[..., :h, :w] = 1.0
    return image, valid


def export(path: Path, weights: str | None) -> None:
    """Write the LRL as ONNX (opset 17, the shape of `lrl_input`)."""
    from model.weights import load_model

    model = load_model(weights).model
    image, valid = lrl_input(model.cfg.lrl_size, model.cfg.stride)
    with torch.inference_mode(False), torch.no_grad():
        torch.onnx.export(
            _LRLGraph(model.lrl).eval(),
            (torch.from_numpy(image), torch.from_numpy(valid)),
            str(path),
            dynamo=False,
            input_names=["image", "valid"],
            output_names=["result", "mask"],
            opset_version=17,
        )


def _best(fn: Callable[[], tuple[np.ndarray, np.ndarray]], repeat: int) -> tuple[float, tuple]:
    out = fn()  # first call: graph set-up, untimed
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


BACKENDS = (
    "torch float32",
    "torch compiled",
    "torch bfloat16 autocast",
    "onnxruntime",
    "openvino float32",
    "openvino default",
)


def backend(name: str, onnx: Path | None, weights: str | None, threads: int) -> Callable | str:
    """A call returning (result, mask) as numpy for one backend, or why it cannot run."""
    from model.cpu import native_bf16
    from model.weights import load_model

    model = load_model(weights).model
    image, valid = lrl_input(model.cfg.lrl_size, model.cfg.stride)
    if name == "torch compiled":
        from model.compiled_lrl import CompiledLRL

        compiled = CompiledLRL(model.lrl)
        if image.shape[-2:] != compiled.canvas:
            return f"the input's canvas is not the compiled {compiled.canvas}"
        t_image, t_valid = torch.from_numpy(image), torch.from_numpy(valid)
        compiled.warm(torch.device("cpu"))

        def run_compiled() -> tuple[np.ndarray, np.ndarray]:
            with torch.inference_mode():
                out = compiled(t_image, t_valid)
            return out.result.numpy(), out.mask.numpy()

        return run_compiled
    if name.startswith("torch"):
        bf16 = "bfloat16" in name
        if bf16 and not native_bf16():
            return "no hardware bfloat16"
        graph = _LRLGraph(model.lrl).eval()
        t_image, t_valid = torch.from_numpy(image), torch.from_numpy(valid)

        def run() -> tuple[np.ndarray, np.ndarray]:
            with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
                result, mask = graph(t_image, t_valid)
            return result.float().numpy(), mask.float().numpy()

        return run
    if onnx is None:
        return "no ONNX file (--onnx)"
    if name == "onnxruntime":
        try:
            import onnxruntime as ort
        except ImportError:
            return "not installed"
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(str(onnx), options, providers=["CPUExecutionProvider"])
        return lambda: tuple(session.run(None, {"image": image, "valid": valid}))
    try:
        import openvino as ov
    except ImportError:
        return "not installed"
    config: dict = {"INFERENCE_NUM_THREADS": threads}
    if name == "openvino float32":
        config["INFERENCE_PRECISION_HINT"] = "f32"
    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(onnx)), "CPU", config)

    def run() -> tuple[np.ndarray, np.ndarray]:
        res = compiled([image, valid])
        return res[compiled.output(0)], res[compiled.output(1)]

    return run


def _measure(name: str, args: argparse.Namespace, out: Path) -> None:
    """One backend in this process (each gets its own: runtimes' thread pools collide)."""
    torch.set_num_threads(args.threads)
    run = backend(name, args.onnx, args.weights, args.threads)
    if isinstance(run, str):
        print(json.dumps({"backend": name, "note": run}))
        return
    seconds, (result, mask) = _best(run, args.repeat)
    np.savez(out, result=result, mask=mask)
    print(json.dumps({"backend": name, "ms": round(seconds * 1e3, 1)}))


def main(argv: list[str] | None = None) -> None:
    """Export the LRL, or time every backend against torch float32."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export", type=Path, help="write the ONNX file and stop")
    parser.add_argument("--onnx", type=Path, help="an ONNX file from --export")
    parser.add_argument("--weights", default=None)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", type=Path, default=RESULTS / "backends.json")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per backend")
    parser.add_argument("--one", choices=BACKENDS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.export:
        export(args.export, args.weights)
        print(f"wrote {args.export}")
        return
    if args.one:
        _measure(args.one, args, args.out)
        return
    rows, reference = [], None
    with tempfile.TemporaryDirectory() as tmp:
        for name in BACKENDS:
            saved = Path(tmp) / f"{len(rows)}.npz"
            cmd = [sys.executable, "-m", "bench.backends", "--one", name, "--out", str(saved)]
            cmd += ["--repeat", str(args.repeat), "--threads", str(args.threads)]
            cmd += ["--onnx", str(args.onnx)] if args.onnx else []
            cmd += ["--weights", args.weights] if args.weights else []
            try:
                done = subprocess.run(
                    cmd, check=True, capture_output=True, text=True, timeout=args.timeout
                )
                row = json.loads(done.stdout.strip().splitlines()[-1])
            except subprocess.TimeoutExpired:
                row = {"backend": name, "note": f"did not finish in {args.timeout:.0f} s"}
            if "ms" in row:
                data = np.load(saved)
                reference = reference or (data["result"], data["mask"], row["ms"])
                row["speedup"] = round(reference[2] / row["ms"], 2)
                row["result_max_diff_255"] = round(
                    float(np.abs(data["result"] - reference[0]).max()) * 255, 3
                )
                row["mask_max_diff"] = round(float(np.abs(data["mask"] - reference[1]).max()), 4)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    from evaluation.tables import markdown_table

    header = ("backend", "ms", "vs torch float32", "result max diff (1/255)", "mask max diff")
    cells = (
        (r["backend"], "-", "-", "-", r["note"])
        if "note" in r
        else (
            r["backend"],
            r["ms"],
            f"{r['speedup']}x",
            r["result_max_diff_255"],
            r["mask_max_diff"],
        )
        for r in rows
    )
    print(markdown_table(header, cells))
    meta = {"threads": args.threads, "repeat": args.repeat, "torch": torch.__version__}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
