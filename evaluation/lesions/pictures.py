"""Before/after pictures of the real-blemish evaluation, for looking at by eye and for the docs.

Each picture is one photo (or a crop of it), side by side: the input with the marks, coloured by
ABPN's stages (red: centre outside the skin gate; yellow: in the gate, mask does not fire;
green: mask fires), ABPN's result, its mask, the detect-and-fill result and the classic filter.

    python -m evaluation.lesions.pictures --photos data/lesions --out /tmp/lesion-pictures \
        --only levle2_109 --crop 0 0 640 640 --zoom 1

The photos are for research only: their pictures stay out of the repository (write them
outside it).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from evaluation.lesions.marks import MARKS, load_marks, photo_path
from evaluation.lesions.measure import Lesion, centre_values, disc_means

GATE = 127
FIRES = 64


def stage_colour(skin: np.ndarray, mask: np.ndarray, lesions: list[Lesion]) -> list[tuple]:
    """One RGB colour per lesion: red outside the gate, yellow in it unfired, green fired."""
    inside = centre_values(skin, lesions) > GATE
    fires = disc_means(mask.astype(np.float32), lesions) > FIRES
    return [
        (40, 220, 40) if f else (240, 220, 0) if i else (240, 40, 40)
        for i, f in zip(inside, fires, strict=True)
    ]


def panel_strip(panels: list[np.ndarray], zoom: int, labels: list[str]) -> Image.Image:
    """Panels side by side, each enlarged `zoom` times (nearest), with a label above."""
    tiles = []
    for panel, label in zip(panels, labels, strict=True):
        img = Image.fromarray(panel if panel.ndim == 3 else np.stack([panel] * 3, -1))
        img = img.resize((img.width * zoom, img.height * zoom), Image.Resampling.NEAREST)
        framed = Image.new("RGB", (img.width, img.height + 16), "white")
        framed.paste(img, (0, 16))
        ImageDraw.Draw(framed).text((4, 2), label, fill=(0, 0, 0))
        tiles.append(framed)
    strip = Image.new("RGB", (sum(t.width for t in tiles) + 4 * (len(tiles) - 1), tiles[0].height))
    x = 0
    for t in tiles:
        strip.paste(t, (x, 0))
        x += t.width + 4
    return strip


def main(argv: list[str] | None = None) -> int:
    """Command line: one picture per photo named by --only, written to --out."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, default=Path("data/lesions"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--only", nargs="+", required=True)
    parser.add_argument("--crop", nargs=4, type=int, default=None, help="x0 y0 x1 y1")
    parser.add_argument("--zoom", type=int, default=1)
    parser.add_argument("--weights", default=None)
    args = parser.parse_args(argv)

    import torch

    from evaluation.baseline import classic_retouch
    from evaluation.lesions.fill import detect_and_fill
    from model.engine import RetouchEngine
    from model.weights import load_model

    torch.set_num_threads(1)
    engine = RetouchEngine(load_model(args.weights).model)
    marks = load_marks(MARKS)
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.only:
        image = np.asarray(Image.open(photo_path(args.photos, name)).convert("RGB"))
        parse = engine.parse(image)
        skin = parse.skin_mask(image.shape[:2])
        (res,) = engine.retouch_batch([image], 1.0, True, parses=[parse])
        filled, _ = detect_and_fill(image, skin)
        marked = Image.fromarray(image.copy())
        draw = ImageDraw.Draw(marked)
        for les, colour in zip(marks[name], stage_colour(skin, res.mask, marks[name]), strict=True):
            r = les.r + 1.5
            draw.ellipse([les.x - r, les.y - r, les.x + r, les.y + r], outline=colour)
        x0, y0, x1, y1 = args.crop or (0, 0, image.shape[1], image.shape[0])
        panels = [np.asarray(marked), res.image, res.mask, filled, classic_retouch(image)]
        labels = ["input, marks", "ABPN", "ABPN mask", "detect and fill", "classic filter"]
        strip = panel_strip([p[y0:y1, x0:x1] for p in panels], args.zoom, labels)
        path = args.out / f"lesions_{name}.png"
        strip.save(path)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
