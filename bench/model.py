"""Model benchmark: ABPN time per photo at 1K-8K (LRL / pyramid split), beside the JPEG codec
floor of the same photo, the naive full-resolution LRL, the classic filter, and peak memory.

    python -m bench.model [--sizes 1K 2K 4K 8K] [--repeat 3] [--weights PATH|random]

Each size runs in its own subprocess so that its peak resident memory is its own; the table and
bench/results/model.json are written at the end. Ratios are between figures of the same run.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SIZES = {"1K": (576, 1024), "2K": (1152, 2048), "4K": (2160, 3840), "8K": (4320, 7680)}
NAIVE_SIZES = {"1K", "2K"}
BASELINE_SIZES = {"1K", "2K", "4K"}
RESULTS = Path(__file__).parent / "results"


def portrait(size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """A real portrait (scikit-image's astronaut, cropped to 16:9 around the face) with painted
    blemishes, upscaled to `size`: no high-resolution portrait ships offline."""
    from PIL import Image

    from model.data.blemishes import paint_blemishes, quantise
    from model.data.sources import load_portraits

    astronaut = next(p for p in load_portraits() if p.name == "astronaut")
    rows = round(astronaut.image.shape[1] * size[0] / size[1])
    clean = astronaut.image[:rows].astype(np.float32) / 255.0
    rng = np.random.default_rng(seed)
    painted, _ = paint_blemishes(clean, astronaut.skin[:rows], rng, astronaut.defect_scale)
    small = Image.fromarray(quantise(painted))
    return np.asarray(small.resize((size[1], size[0]), Image.Resampling.BICUBIC))


def _best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def measure(label: str, repeat: int, weights: str | None) -> dict:
    """All figures for one size, in this process (run it in a fresh one for its peak memory)."""
    import simplejpeg
    import torch

    from model.baseline import classic_retouch
    from model.engine import RetouchEngine
    from model.weights import load_model

    torch.set_grad_enabled(False)
    image = portrait(SIZES[label])
    jpeg = simplejpeg.encode_jpeg(image, quality=90)
    engine = RetouchEngine(load_model(weights).model)
    engine.warmup()
    row: dict = {"size": label, "height": image.shape[0], "width": image.shape[1]}
    row["decode_s"] = _best(lambda: simplejpeg.decode_jpeg(jpeg), repeat)
    row["encode_s"] = _best(lambda: simplejpeg.encode_jpeg(image, quality=90), repeat)
    row["floor_s"] = row["decode_s"] + row["encode_s"]
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = engine.retouch(image)
        runs.append((time.perf_counter() - t0, result.timings))
    total, timings = min(runs, key=lambda r: r[0])
    row["model_s"] = total
    row["prepare_s"] = timings["prepare"]
    row["lrl_s"] = timings["lrl"]
    row["pyramid_s"] = timings["pyramid"]
    row["model_over_floor"] = total / row["floor_s"]
    # Peak memory of the ABPN path alone: the naive network below needs far more.
    row["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if label in NAIVE_SIZES:
        full = torch.from_numpy(image).permute(2, 0, 1).float() / 255
        row["naive_s"] = _best(lambda: engine.model.low_res([full]), repeat)
        row["naive_over_abpn"] = row["naive_s"] / total
    if label in BASELINE_SIZES:
        row["baseline_s"] = _best(lambda: classic_retouch(image), 1)
    return row


def _fmt(v: float | None, unit: str = "") -> str:
    return "-" if v is None else f"{v:.3f}{unit}" if unit == "s" else f"{v:.1f}{unit}"


def table(rows: list[dict]) -> str:
    """Markdown table of the rows."""
    head = (
        "| size | pixels | model s | LRL s | pyramid s | prepare s | JPEG dec+enc s | "
        "model/floor | naive LRL s | naive/ABPN | classic filter s | ABPN peak RSS MB |"
    )
    lines = [head, "|" + "---|" * 12]
    for r in rows:
        lines.append(
            f"| {r['size']} | {r['width']}x{r['height']} | {_fmt(r['model_s'], 's')} | "
            f"{_fmt(r['lrl_s'], 's')} | {_fmt(r['pyramid_s'], 's')} | "
            f"{_fmt(r['prepare_s'], 's')} | {_fmt(r['floor_s'], 's')} | "
            f"{_fmt(r['model_over_floor'], 'x')} | {_fmt(r.get('naive_s'), 's')} | "
            f"{_fmt(r.get('naive_over_abpn'), 'x')} | {_fmt(r.get('baseline_s'), 's')} | "
            f"{r['peak_rss_mb']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark over the requested sizes and write the table and JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--weights", default=None, help="checkpoint path or 'random'")
    parser.add_argument("--one", choices=list(SIZES), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=RESULTS / "model.json")
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure(args.one, args.repeat, args.weights)))
        return
    rows = []
    for label in args.sizes:
        cmd = [sys.executable, "-m", "bench.model", "--one", label, "--repeat", str(args.repeat)]
        if args.weights:
            cmd += ["--weights", args.weights]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        print(f"{label}: {rows[-1]['model_s']:.3f} s", file=sys.stderr)
    import torch

    meta = {"torch": torch.__version__, "threads": torch.get_num_threads(), "repeat": args.repeat}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    print(table(rows))
    print(f"\nbest of {args.repeat} runs; JSON: {args.out}")


if __name__ == "__main__":
    main()
