"""Equivalence of the engine and the face parser with a reference commit, on real photos.

    python -m bench.equivalence [--reference d8a9ffc] [--cases smiling:2K acne:8K ...]

The reference commit's ``model`` package is extracted (``git archive``) into a cache folder and
run in a subprocess, which saves for each case its face parse, retouched image and mask. This
checkout then runs the same photos and compares:

- **engine**: fed the reference's own face parse, the output must lie within 1/255 of the
  reference (max abs diff <= 1 per channel) and equal the input bit for bit outside the skin;
- **parser**: skin-mask IoU with the reference, the largest change of a mask value, and the
  region boxes;
- **end to end**: this checkout's parser and engine against the reference's.

Prints a table and writes bench/results/equivalence.json. Both sides run with the weights of
this checkout, so the comparison is of the code alone.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
WEIGHTS = ROOT / "model" / "weights" / "abpn-default.safetensors"
CACHE = Path(tempfile.gettempdir()) / "abpn-equivalence"
SIDES = {"2K": 2048, "4K": 3840, "8K": 7680}
DEFAULT_CASES = (
    "smiling:2K", "smiling:4K", "group12:2K", "group12:4K", "acne:2K", "acne:4K", "acne:8K",
    "obama3:4K", "lena:4K",
)  # fmt: skip


def load_case(case: str, photo_dir: Path) -> np.ndarray:
    """The photo of a "name:size" case, its long side resized to that size."""
    from PIL import Image

    from model.photo import resize_long_side

    name, size = case.split(":")
    image = np.asarray(Image.open(photo_dir / f"{name}.png").convert("RGB"))
    return resize_long_side(image, SIDES[size])


def _save_parse(parse, prefix: str, out: dict) -> None:
    out[f"{prefix}boxes"] = np.array(
        [(r.box.x0, r.box.y0, r.box.x1, r.box.y1) for r in parse.regions], np.int64
    ).reshape(-1, 4)
    for i, region in enumerate(parse.regions):
        out[f"{prefix}skin{i}"] = region.skin
        (face,) = region.faces
        out[f"{prefix}face{i}"] = np.array([*face.box.__dict__.values(), face.score])
        out[f"{prefix}landmarks{i}"] = face.landmarks


def _load_parse(data, prefix: str = ""):
    from model.faces import Box, Face, FaceParse, FaceRegion

    regions = []
    for i, (x0, y0, x1, y1) in enumerate(data[f"{prefix}boxes"]):
        fx0, fy0, fx1, fy1, score = data[f"{prefix}face{i}"]
        face = Face(
            Box(int(fx0), int(fy0), int(fx1), int(fy1)), float(score), data[f"{prefix}landmarks{i}"]
        )
        box = Box(int(x0), int(y0), int(x1), int(y1))
        regions.append(FaceRegion(box, (face,), data[f"{prefix}skin{i}"]))
    faces = tuple(f for r in regions for f in r.faces)
    return FaceParse(faces, tuple(regions))


def save_inputs(cases: list[str], photo_dir: Path) -> Path:
    """Each case's photo, resized by this checkout, as ``.npy`` in a folder of the cache.

    The reference runs on these very pixels, so it needs none of this checkout's helpers (a
    commit before a helper moved would not have it where this file imports it from).
    """
    folder = CACHE / "inputs"
    folder.mkdir(parents=True, exist_ok=True)
    for case in cases:
        np.save(folder / f"{case.replace(':', '_')}.npy", load_case(case, photo_dir))
    return folder


def capture(cases: list[str], input_dir: Path, out_dir: Path, weights: str | None) -> None:
    """Parse and retouch every case with the importable `model` package; one .npz per case.

    `input_dir` holds the cases' pixels as written by `save_inputs`.
    """
    import torch

    from model.engine import RetouchEngine
    from model.weights import load_model

    torch.set_grad_enabled(False)
    engine = RetouchEngine(load_model(weights).model)
    out_dir.mkdir(parents=True, exist_ok=True)
    for case in cases:
        image = np.load(input_dir / f"{case.replace(':', '_')}.npy")
        parse = engine.parse(image)
        (result,) = engine.retouch_batch([image], 1.0, True, parses=[parse])
        data = {"image": result.image, "mask": result.mask}
        _save_parse(parse, "", data)
        np.savez(out_dir / f"{case.replace(':', '_')}.npz", **data)
        print(case, flush=True)


def _reference(commit: str, cases: list[str], photo_dir: Path, weights: str) -> Path:
    """Run `capture` with the reference commit's model package; returns its output folder."""
    tree = CACHE / commit
    if not (tree / "model").is_dir():
        tree.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "archive", commit, "model"], cwd=ROOT, check=True, capture_output=True
        ).stdout
        with tempfile.TemporaryFile() as f:
            f.write(archive)
            f.seek(0)
            with tarfile.open(fileobj=f) as tar:
                tar.extractall(tree, filter="data")
    out = tree / "outputs"
    missing = [c for c in cases if not (out / f"{c.replace(':', '_')}.npz").exists()]
    if missing:
        # With -c the working folder comes first on sys.path: the reference's `model` shadows
        # this checkout's (which only the editable install's finder provides).
        inputs = save_inputs(missing, photo_dir)
        args = ["--capture", str(out), "--photos", str(inputs), "--weights", weights]
        run = f"import runpy, sys; sys.argv = {[__file__, *args, '--cases', *missing]!r}; "
        run += f"runpy.run_path({__file__!r}, run_name='__main__')"
        subprocess.run([sys.executable, "-c", run], cwd=tree, check=True)
    return out


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def compare(case: str, ref_dir: Path, photo_dir: Path, engine) -> dict:
    """Figures of one case against the reference's saved outputs."""
    image = load_case(case, photo_dir)
    ref = np.load(ref_dir / f"{case.replace(':', '_')}.npz")
    ref_parse = _load_parse(ref)
    ref_skin = ref_parse.skin_mask(image.shape[:2])
    (same_parse,) = engine.retouch_batch([image], 1.0, True, parses=[ref_parse])
    diff = np.abs(same_parse.image.astype(np.int16) - ref["image"])
    outside = ref_skin == 0
    parse = engine.parse(image)
    skin = parse.skin_mask(image.shape[:2])
    (own,) = engine.retouch_batch([image], 1.0, True, parses=[parse])
    own_diff = np.abs(own.image.astype(np.int16) - ref["image"])
    return {
        "case": case,
        "regions": len(ref_parse.regions),
        "engine_max_diff": int(diff.max()),
        "engine_pixels_off": int((diff.max(axis=-1) > 0).sum()),
        "engine_mask_max_diff": int(np.abs(same_parse.mask.astype(np.int16) - ref["mask"]).max()),
        "outside_skin_changed": int((same_parse.image != image)[outside].any(axis=-1).sum()),
        "skin_iou": _iou(skin > 0, ref_skin > 0),
        "skin_max_diff": int(np.abs(skin.astype(np.int16) - ref_skin).max()),
        "same_boxes": bool(
            len(parse.regions) == len(ref_parse.regions)
            and all(a.box == b.box for a, b in zip(parse.regions, ref_parse.regions, strict=True))
        ),
        "end_to_end_max_diff": int(own_diff.max()),
        "end_to_end_outside_skin_changed": int((own.image != image)[skin == 0].any(axis=-1).sum()),
    }


def table(rows: list[dict]) -> str:
    """Markdown table of the comparison rows."""
    from evaluation.tables import markdown_table

    header = (
        "case", "regions", "engine max diff", "pixels off", "mask max diff",
        "changed outside skin", "skin IoU", "skin max diff", "same boxes", "end-to-end max diff",
    )  # fmt: skip
    return markdown_table(
        header,
        (
            (
                r["case"],
                r["regions"],
                r["engine_max_diff"],
                r["engine_pixels_off"],
                r["engine_mask_max_diff"],
                r["outside_skin_changed"],
                f"{r['skin_iou']:.4f}",
                r["skin_max_diff"],
                r["same_boxes"],
                r["end_to_end_max_diff"],
            )
            for r in rows
        ),
    )


def main(argv: list[str] | None = None) -> None:
    """Capture the reference (cached) and compare this checkout against it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", default="d8a9ffc")
    parser.add_argument("--cases", nargs="+", default=list(DEFAULT_CASES))
    parser.add_argument("--photos", type=Path, default=ROOT / "data" / "photos")
    parser.add_argument("--weights", default=str(WEIGHTS))
    parser.add_argument("--capture", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=RESULTS / "equivalence.json")
    args = parser.parse_args(argv)
    if args.capture:
        capture(args.cases, args.photos, args.capture, args.weights)
        return
    ref_dir = _reference(args.reference, args.cases, args.photos, args.weights)

    import torch

    from model.engine import RetouchEngine
    from model.weights import load_model

    torch.set_grad_enabled(False)
    engine = RetouchEngine(load_model(args.weights).model)
    rows = []
    for case in args.cases:
        rows.append(compare(case, ref_dir, args.photos, engine))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"reference": args.reference, "rows": rows}, indent=2) + "\n")
    print(table(rows))
    worst = max(r["engine_max_diff"] for r in rows)
    leaks = sum(r["outside_skin_changed"] for r in rows)
    print(f"\nengine max diff {worst} (limit 1), pixels changed outside skin {leaks} (limit 0)")
    if worst > 1 or leaks:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
