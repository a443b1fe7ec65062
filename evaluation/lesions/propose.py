"""Tools for marking lesions by hand: proposals to start from, and overlays to check marks on.

Proposals are a difference of Gaussians on CIE Lab a* (redness) and on inverted L* (dark marks)
near the face, with a low threshold: they over-propose on purpose, and every mark in
`marks.json` was kept, moved, resized, added or dropped by eye on the overlays. The evaluation
never imports this module (its detect-and-fill baseline has a detector of its own).

    python -m evaluation.lesions.propose --photos data/lesions --out /tmp/overlays
    python -m evaluation.lesions.propose --photos data/lesions --out /tmp/overlays --check
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw
from skimage.feature import blob_dog

from evaluation.lesions.marks import MARKS, load_marks, photo_path
from evaluation.lesions.measure import Lesion, to_lab

TILE = 330
ZOOM = 2
PROPOSE_THRESHOLD = 0.22


def propose(image: np.ndarray, near_face: np.ndarray) -> list[Lesion]:
    """Red and dark blobs inside `near_face` (bool), generously: to be checked by eye."""
    lab = to_lab(image)
    found: list[Lesion] = []
    # A papule stands out by a* more than a dark mark does by L*: each gets its own scale.
    for channel, scale, kind in ((lab[..., 1], 8, "papule"), (100 - lab[..., 0], 25, "mark")):
        flat = cv2.GaussianBlur(channel, (0, 0), 12)
        excess = np.clip((channel - flat) / scale, 0, 1) * near_face
        blobs = blob_dog(excess, min_sigma=1.2, max_sigma=8, threshold=PROPOSE_THRESHOLD)
        for y, x, sigma in blobs.astype(float):
            found.append(Lesion(round(x, 1), round(y, 1), round(sigma * 1.6, 1), kind))
    return _merge(found)


def _merge(lesions: list[Lesion]) -> list[Lesion]:
    """Drop a proposal whose centre lies inside a larger one's disc."""
    kept: list[Lesion] = []
    for les in sorted(lesions, key=lambda le: -le.r):
        if all(np.hypot(les.x - k.x, les.y - k.y) > k.r for k in kept):
            kept.append(les)
    return kept


def render_tiles(image: np.ndarray, lesions: list[Lesion], region: np.ndarray, out: Path) -> None:
    """Write the tiles of `image` that hold `region`, zoomed 2x, each lesion circled and numbered.

    Tiles overlap by 20 px so that a lesion on an edge is seen whole in one of them.
    """
    h, w = image.shape[:2]
    step = TILE - 20
    for ty in range(0, max(1, h - 20), step):
        for tx in range(0, max(1, w - 20), step):
            if not region[ty : ty + TILE, tx : tx + TILE].any():
                continue
            crop = Image.fromarray(image[ty : ty + TILE, tx : tx + TILE])
            big = crop.resize((crop.width * ZOOM, crop.height * ZOOM), Image.Resampling.NEAREST)
            draw = ImageDraw.Draw(big)
            for i, les in enumerate(lesions):
                x, y, r = (les.x - tx) * ZOOM, (les.y - ty) * ZOOM, les.r * ZOOM
                if -r < x < big.width + r and -r < y < big.height + r:
                    colour = (0, 255, 0) if les.kind != "mark" else (0, 200, 255)
                    draw.ellipse([x - r, y - r, x + r, y + r], outline=colour)
                    draw.text((x + r + 1, y - 5), str(i), fill=(255, 255, 0))
            big.save(out / f"tile_{ty:04d}_{tx:04d}.png")


def main(argv: list[str] | None = None) -> int:
    """Command line: proposals (or, with --check, the committed marks) drawn on tiles."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, default=Path("data/lesions"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--check", action="store_true", help="draw marks.json, not proposals")
    args = parser.parse_args(argv)

    import torch

    from model.engine import RetouchEngine
    from model.weights import load_model

    torch.set_num_threads(1)
    engine = RetouchEngine(load_model(None).model)
    marks = load_marks(MARKS)
    proposals = {}
    for name in args.only or sorted(marks):
        image = np.asarray(Image.open(photo_path(args.photos, name)).convert("RGB"))
        skin = engine.parse(image).skin_mask(image.shape[:2]) > 127
        grow = max(3, round(0.06 * max(image.shape[:2])))
        near = cv2.dilate(skin.astype(np.uint8), np.ones((2 * grow + 1,) * 2, np.uint8)) > 0
        lesions = marks[name] if args.check else propose(image, near)
        proposals[name] = [[les.x, les.y, les.r, les.kind] for les in lesions]
        folder = args.out / name
        folder.mkdir(parents=True, exist_ok=True)
        render_tiles(image, lesions, near, folder)
        print(f"{name}: {len(lesions)} {'marks' if args.check else 'proposals'} -> {folder}")
    if not args.check:
        (args.out / "proposals.json").write_text(json.dumps(proposals, indent=0) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
