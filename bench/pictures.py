"""Before/after pictures for the docs: a real portrait with painted blemishes, ABPN's result,
the classic filter's, and ABPN's mask, as a face crop at 2x zoom and the whole photo.

    python -m bench.pictures [--out docs/images]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from bench.model import portrait
from model.baseline import classic_retouch
from model.engine import RetouchEngine
from model.weights import load_model

SIZE = (576, 1024)
FACE = (120, 370, 330, 580)  # y0, y1, x0, x1 of the face in the 1024x576 portrait


def labelled(row: list[tuple[str, np.ndarray]], gap: int = 6) -> Image.Image:
    """Images side by side with a caption above each."""
    h = max(img.shape[0] for _, img in row)
    w = sum(img.shape[1] for _, img in row) + gap * (len(row) - 1)
    sheet = Image.new("RGB", (w, h + 22), "white")
    draw = ImageDraw.Draw(sheet)
    x = 0
    for caption, img in row:
        pixels = img if img.ndim == 3 else np.repeat(img[..., None], 3, axis=-1)
        sheet.paste(Image.fromarray(pixels), (x, 22))
        draw.text((x + 4, 4), caption, fill="black")
        x += img.shape[1] + gap
    return sheet


def main(argv: list[str] | None = None) -> None:
    """Render docs/images/before_after_face.png and before_after.jpg."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/images"))
    args = parser.parse_args(argv)
    image = portrait(SIZE, seed=3)
    result = RetouchEngine(load_model().model).retouch(image, 1.0, return_mask=True)
    classic = classic_retouch(image)
    y0, y1, x0, x1 = FACE

    def face(img: np.ndarray) -> np.ndarray:
        crop = img[y0:y1, x0:x1]
        return crop.repeat(2, axis=0).repeat(2, axis=1)

    args.out.mkdir(parents=True, exist_ok=True)
    labelled(
        [
            ("input (painted blemishes)", face(image)),
            ("ABPN", face(result.image)),
            ("classic filter", face(classic)),
            ("ABPN mask", face(result.mask)),
        ]
    ).save(args.out / "before_after_face.png", optimize=True)
    labelled([("input", image), ("ABPN", result.image)]).save(
        args.out / "before_after.jpg", quality=90
    )
    print(f"wrote {args.out}/before_after_face.png and before_after.jpg")


if __name__ == "__main__":
    main()
