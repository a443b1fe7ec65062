"""Model benchmark: engine time per photo on real photos at 2K, 4K and 8K, per stage, beside
the JPEG codec floor of the same photo, peak memory, and the engine's throughput on small photos.

    python -m bench.model [--photos portrait smiling group12 acne ...] [--sizes 2K 4K 8K]
                          [--repeat 3] [--threads 2 1] [--lrl eager compiled]
                          [--malloc glibc tuned]
                          [--weights PATH]

Photos: the real photos of ``training.data.real_photos`` (several faces, busy backgrounds) with
their long side resized to the size (bicubic, as ``evaluation.evaluate_real``), and "portrait", the
earlier benchmark's astronaut with painted blemishes cropped to 16:9. Each photo, size, thread
count and LRL mode (eager, or compiled as the service runs it on CPUs: ``model.compiled_lrl``,
compiled during the untimed warm-up, whose seconds are reported) and malloc mode (glibc's
defaults, or tuned as the service and CLI run: ``model.allocator``) runs in its own subprocess, so
its peak resident memory is its own: the peak over the model runs (the photo, the weights and
the engine's working set), not over the benchmark's own loading and resizing of the source
photo. Per stage: JPEG decode, faces and skin, prepare (resizing), LRL, pyramid, blend, JPEG
encode; "model" is
everything between decode and encode, and "model/floor" divides it by decode + encode of the
same photo (simplejpeg, quality 90), measured in the same process. Best of --repeat runs.

Throughput: RetouchEngine.retouch_batch on 8 real portrait crops of 512x384 in batches of 8, on
a worker thread as the service runs it (like bench/load.py's engine ceiling). The table is
printed and bench/results/model.json written at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import platform
import resource
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

SIZES = {"2K": 2048, "4K": 3840, "8K": 7680}
PORTRAIT_SIZES = {"2K": (1152, 2048), "4K": (2160, 3840), "8K": (4320, 7680)}
PHOTOS = ("portrait", "smiling", "group12", "acne", "obama3", "lena")
THROUGHPUT_PHOTOS = ("smiling", "lena", "goatee", "obama", "obama2", "hopper", "biden", "obama3")
RESULTS = Path(__file__).parent / "results"
STAGES = ("faces", "prepare", "lrl", "pyramid", "blend")
LRL_MODES = ("eager", "compiled")
MALLOC_MODES = ("glibc", "tuned")


def portrait(size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """A real portrait (scikit-image's astronaut, cropped to 16:9 around the face) with painted
    blemishes, upscaled to `size`: no high-resolution portrait ships offline."""
    from PIL import Image

    from training.data.blemishes import paint_blemishes, quantise
    from training.data.sources import load_portraits

    astronaut = next(p for p in load_portraits() if p.name == "astronaut")
    rows = round(astronaut.image.shape[1] * size[0] / size[1])
    clean = astronaut.image[:rows].astype(np.float32) / 255.0
    rng = np.random.default_rng(seed)
    painted, _ = paint_blemishes(clean, astronaut.skin[:rows], rng, astronaut.defect_scale)
    small = Image.fromarray(quantise(painted))
    return np.asarray(small.resize((size[1], size[0]), Image.Resampling.BICUBIC))


def load_photo(name: str, size: str) -> np.ndarray:
    """A benchmark photo at one size: "portrait" or a real photo with its long side resized."""
    if name == "portrait":
        return portrait(PORTRAIT_SIZES[size])
    from model.photo import resize_long_side
    from training.data.real_photos import load

    return resize_long_side(load(name), SIZES[size])


def crops_512x384() -> list[np.ndarray]:
    """Real portraits cut to 4:3 around their middle and resized to 512x384."""
    from PIL import Image

    from training.data.real_photos import load

    out = []
    for name in THROUGHPUT_PHOTOS:
        image = load(name)
        h, w = image.shape[:2]
        ch, cw = (h, round(h * 4 / 3)) if w * 3 >= h * 4 else (round(w * 3 / 4), w)
        y0, x0 = (h - ch) // 2, (w - cw) // 2
        crop = Image.fromarray(image[y0 : y0 + ch, x0 : x0 + cw])
        out.append(np.asarray(crop.resize((512, 384), Image.Resampling.BICUBIC)))
    return out


def _best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _engine(weights: str | None, lrl: str):
    from model.engine import RetouchEngine
    from model.weights import load_model

    model = load_model(weights).model
    # An older engine (a reference commit run with this script) has no compiled LRL.
    return RetouchEngine(model, compile_lrl=True) if lrl == "compiled" else RetouchEngine(model)


def _set_malloc(mode: str) -> None:
    """The process's malloc: glibc's defaults, or tuned as the service runs it."""
    if mode == "tuned":
        from model.allocator import tune_malloc

        if not tune_malloc():
            raise SystemExit("malloc tuning needs glibc")


def measure(
    name: str, label: str, repeat: int, weights: str | None, threads: int, lrl: str, malloc: str
) -> dict:
    """All figures for one photo and size, in this process (run it in a fresh one for its peak
    memory)."""
    import simplejpeg
    import torch

    _set_malloc(malloc)
    torch.set_grad_enabled(False)
    torch.set_num_threads(threads)
    image = load_photo(name, label)
    jpeg = simplejpeg.encode_jpeg(image, quality=90)
    engine = _engine(weights, lrl)
    started = time.perf_counter()
    engine.warmup()
    row: dict = {"photo": name, "size": label, "threads": threads, "lrl": lrl, "malloc": malloc}
    row["warmup_s"] = time.perf_counter() - started
    row.update(height=image.shape[0], width=image.shape[1])
    row["decode_s"] = _best(lambda: simplejpeg.decode_jpeg(jpeg), repeat)
    row["encode_s"] = _best(lambda: simplejpeg.encode_jpeg(image, quality=90), repeat)
    row["floor_s"] = row["decode_s"] + row["encode_s"]
    # The peak is taken over the model runs only: loading and resizing the source photo for the
    # benchmark (Pillow holds an 8K photo twice) is not what a request costs.
    _reset_peak_rss()
    # Minor page faults per run: what the malloc tuning saves (tests/model/test_allocator.py
    # checks only that the settings apply; the count depends on the kernel and CPU).
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    total, timings = float("inf"), {}
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = engine.retouch(image)
        seconds = time.perf_counter() - t0
        if seconds < total:
            total, timings = seconds, result.timings
        row["faces"] = result.faces
        del result  # a kept photo would add its size to the next run's peak
    row["page_faults"] = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) // repeat
    row["model_s"] = total
    for stage in STAGES:
        # An older engine (a reference commit) may not time every stage.
        row[f"{stage}_s"] = timings.get(stage)
    row["model_over_floor"] = total / row["floor_s"]
    row["peak_rss_mb"] = _peak_rss_mb()
    return row


def _reset_peak_rss() -> None:
    """Start the process's peak resident memory (VmHWM) afresh, where Linux allows it."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _peak_rss_mb() -> float:
    """Peak resident memory of this process since `_reset_peak_rss`, in MB."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return int(status.split("VmHWM:")[1].split()[0]) / 1024


def throughput(
    weights: str | None, threads: int, lrl: str, malloc: str, batch: int = 8, batches: int = 4
) -> dict:
    """Images per second of retouch_batch on real 512x384 portraits, batches of `batch`, on a
    worker thread (as the service and bench/load.py's engine ceiling run it)."""
    import torch

    _set_malloc(malloc)
    torch.set_grad_enabled(False)
    torch.set_num_threads(threads)
    engine = _engine(weights, lrl)
    pixels = crops_512x384()

    def run() -> dict:
        engine.warmup()
        engine.retouch_batch(pixels[:batch])  # first call at this size: untimed
        started = time.perf_counter()
        faces = 0
        for k in range(batches):
            chunk = [pixels[(k * batch + i) % len(pixels)] for i in range(batch)]
            faces += sum(r.faces for r in engine.retouch_batch(chunk))
        seconds = time.perf_counter() - started
        images = batch * batches
        rate = round(images / seconds, 3)
        return {"threads": threads, "lrl": lrl, "malloc": malloc, "batch_size": batch,
                "images": images, "faces": faces, "seconds": round(seconds, 3),
                "images_per_s": rate}  # fmt: skip

    with ThreadPoolExecutor(1) as thread:
        return thread.submit(run).result()


def _fmt(v: float | None, unit: str = "") -> str:
    return "-" if v is None else f"{v:.3f}" if unit == "s" else f"{v:.1f}{unit}"


def table(rows: list[dict]) -> str:
    """Markdown table of the rows. Written out here rather than with `evaluation.tables`: this
    script also runs against a reference commit's `model` package, which may not have it."""
    head = (
        "| photo | size | threads | LRL mode | malloc | pixels | faces | decode s | faces+skin s | "
        "prepare s | LRL s | pyramid s | blend s | encode s | model s | floor s | model/floor | "
        "peak RSS MB | page faults / run | warm-up s |"
    )
    lines = [head, "|" + "---|" * 20]
    for r in rows:
        stages = " | ".join(_fmt(r[f"{s}_s"], "s") for s in STAGES)
        lines.append(
            f"| {r['photo']} | {r['size']} | {r['threads']} | {r.get('lrl', 'eager')} | "
            f"{r.get('malloc', 'glibc')} | "
            f"{r['width']}x{r['height']} | "
            f"{r['faces']} | {_fmt(r['decode_s'], 's')} | {stages} | {_fmt(r['encode_s'], 's')} | "
            f"{_fmt(r['model_s'], 's')} | {_fmt(r['floor_s'], 's')} | "
            f"{_fmt(r['model_over_floor'], 'x')} | {r['peak_rss_mb']:.0f} | "
            f"{r.get('page_faults', '-')} | {_fmt(r.get('warmup_s'), 's')} |"
        )
    return "\n".join(lines)


def _child(args: list[str]) -> dict:
    cmd = [sys.executable, "-m", "bench.model", *args]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark over the requested photos and sizes and write the table and JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", nargs="+", default=list(PHOTOS))
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", nargs="+", type=int, default=[2], help="torch threads")
    parser.add_argument(
        "--lrl", nargs="+", default=list(LRL_MODES), choices=list(LRL_MODES), help="LRL modes"
    )
    parser.add_argument(
        "--malloc",
        nargs="+",
        default=["tuned"],
        choices=list(MALLOC_MODES),
        help="glibc's defaults, or tuned as the service runs (model.allocator)",
    )
    parser.add_argument("--weights", default=None, help="checkpoint path or 'random'")
    parser.add_argument("--no-throughput", action="store_true")
    parser.add_argument(
        "--one",
        nargs=5,
        metavar=("PHOTO", "SIZE", "THREADS", "LRL", "MALLOC"),
        help=argparse.SUPPRESS,
    )
    parser.add_argument(
        "--throughput-one", nargs=3, metavar=("THREADS", "LRL", "MALLOC"), help=argparse.SUPPRESS
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "model.json")
    args = parser.parse_args(argv)
    common = ["--repeat", str(args.repeat)] + (["--weights", args.weights] if args.weights else [])
    if args.one:
        name, label, threads, lrl, malloc = args.one
        row = measure(name, label, args.repeat, args.weights, int(threads), lrl, malloc)
        print(json.dumps(row))
        return
    if args.throughput_one is not None:
        threads, lrl, malloc = args.throughput_one
        print(json.dumps(throughput(args.weights, int(threads), lrl, malloc)))
        return
    rows, rates = [], []
    for label in args.sizes:
        for name in args.photos:
            for threads in args.threads:
                for lrl, malloc in itertools.product(args.lrl, args.malloc):
                    rows.append(_child(["--one", name, label, str(threads), lrl, malloc, *common]))
                    r = rows[-1]
                    ratio = r["model_over_floor"]
                    print(f"{name} {label} {threads} threads {lrl} {malloc}: {r['model_s']:.3f} s, "
                          f"{ratio:.1f}x floor", file=sys.stderr, flush=True)  # fmt: skip
    if not args.no_throughput:
        for threads in args.threads:
            for lrl, malloc in itertools.product(args.lrl, args.malloc):
                rates.append(_child(["--throughput-one", str(threads), lrl, malloc, *common]))
    import torch

    meta = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "repeat": args.repeat,
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    body = {"meta": meta, "rows": rows, "throughput": rates}
    args.out.write_text(json.dumps(body, indent=2) + "\n")
    print(table(rows))
    for r in rates:
        print(f"\nthroughput ({r['threads']} threads, {r['lrl']} LRL, {r['malloc']} malloc): "
              f"{r['images_per_s']:.2f} images/s, 512x384, "
              f"batch {r['batch_size']}, {r['faces']} faces in {r['images']} images")  # fmt: skip
    print(f"\nbest of {args.repeat} runs; JSON: {args.out}")


if __name__ == "__main__":
    main()
