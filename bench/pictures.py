"""Pictures for the docs, on real photos the training never saw: input, ABPN's result and the
retouch mask overlaid.

    python -m bench.pictures [--out docs/images]

- ``real_acne.png``: a real face with real forehead acne (opencv-doc's example.jpg, left
  panel, upscaled 3x): nothing painted.
- ``before_after_face.png``: a held-out portrait at 4K with the independent painter's defects:
  a face crop of the input, ABPN, the classic filter and ABPN's mask over the input.
- ``group.jpg``: twelve faces in one photo, upscaled to 4K: the mask over the photo.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from evaluation.baseline import classic_retouch
from evaluation.evalpaint import paint_face
from model.engine import RetouchEngine
from model.photo import resize_long_side
from model.weights import load_model
from training.data.real_photos import load


def labelled(row: list[tuple[str, np.ndarray]], gap: int = 6) -> Image.Image:
    """Images side by side with a caption above each."""
    h = max(img.shape[0] for _, img in row)
    w = sum(img.shape[1] for _, img in row) + gap * (len(row) - 1)
    sheet = Image.new("RGB", (w, h + 22), "white")
    draw = ImageDraw.Draw(sheet)
    x = 0
    for caption, img in row:
        sheet.paste(Image.fromarray(img), (x, 22))
        draw.text((x + 4, 4), caption, fill="black")
        x += img.shape[1] + gap
    return sheet


def overlay(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The retouch mask in magenta over a dimmed copy of the photo."""
    a = (mask.astype(np.float32) / 255.0)[..., None] * 0.75
    dim = image.astype(np.float32) * 0.8
    return np.clip(dim * (1 - a) + np.float32([255, 0, 200]) * a, 0, 255).astype(np.uint8)


def _zoom(img: np.ndarray, box: tuple[int, int, int, int], side: int) -> np.ndarray:
    x0, y0, x1, y1 = box
    crop = Image.fromarray(img[y0:y1, x0:x1])
    return np.asarray(crop.resize((side, side * (y1 - y0) // (x1 - x0)), Image.Resampling.LANCZOS))


def main(argv: list[str] | None = None) -> None:
    """Render the three pictures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/images"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    engine = RetouchEngine(load_model().model)

    acne = load("acne")[:, :380]  # the left of its three panels: the raw photo
    acne = np.asarray(Image.fromarray(acne).resize((acne.shape[1] * 3, acne.shape[0] * 3)))
    r = engine.retouch(acne, 1.0, return_mask=True)
    labelled(
        [("input (real acne)", acne), ("ABPN", r.image), ("mask", overlay(acne, r.mask))]
    ).resize((3 * 640 + 12, round((acne.shape[0] * 640 / acne.shape[1]) + 22))).save(
        args.out / "real_acne.png", optimize=True
    )

    clean = resize_long_side(load("smiling"), 3840)
    parse = engine.parse(clean)
    region = parse.regions[0]
    b = region.box
    painted = clean.copy()
    crop = clean[b.y0 : b.y1, b.x0 : b.x1]
    face_width = max(f.width for f in region.faces)
    rng = np.random.default_rng(7)
    painted[b.y0 : b.y1, b.x0 : b.x1] = paint_face(crop, region.skin / 255, face_width, rng).image
    r = engine.retouch(painted, 1.0, return_mask=True)
    classic = classic_retouch(painted)
    f = region.faces[0].box
    box = (f.x0, f.y0, f.x1, f.y1)
    labelled(
        [
            ("input (4K, independent painter)", _zoom(painted, box, 480)),
            ("ABPN", _zoom(r.image, box, 480)),
            ("classic filter", _zoom(classic, box, 480)),
            ("ABPN mask", _zoom(overlay(painted, r.mask), box, 480)),
        ]
    ).save(args.out / "before_after_face.png", optimize=True)

    group = resize_long_side(load("group12"), 3840)
    r = engine.retouch(group, 1.0, return_mask=True)
    small = (1920, round(group.shape[0] * 1920 / group.shape[1]))
    rows = [np.asarray(Image.fromarray(x).resize(small)) for x in (group, overlay(group, r.mask))]
    sheet = labelled([("12 faces at 4K: input", rows[0])])
    below = labelled([(f"retouch mask ({r.faces} faces retouched)", rows[1])])
    both = Image.new("RGB", (sheet.width, sheet.height + below.height), "white")
    both.paste(sheet, (0, 0))
    both.paste(below, (0, sheet.height))
    both.save(args.out / "group.jpg", quality=88)
    print(f"wrote {args.out}/real_acne.png, before_after_face.png, group.jpg")


if __name__ == "__main__":
    main()
