"""Test pictures shared by every test folder: small synthetic ones, their encodings, and real
portraits from installed packages."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


def picture(h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    """A smooth picture with some noise, like a small photo."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = 128 + 60 * np.sin(y / 9.0)[..., None] + 40 * np.cos(x / 7.0)[..., None]
    return np.clip(base + rng.normal(0, 8, (h, w, 3)), 0, 255).astype(np.uint8)


def encoded(pixels: np.ndarray, fmt: str = "PNG", **options: Any) -> bytes:
    """`pixels` saved by Pillow as `fmt`."""
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format=fmt, **options)
    return out.getvalue()


def grace_hopper() -> np.ndarray:
    """A real portrait (512x600, matplotlib's sample data: installed with mediapipe)."""
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    return np.asarray(Image.open(path).convert("RGB"))


def astronaut() -> np.ndarray:
    """A second real portrait (512x512, scikit-image's data, public domain)."""
    from skimage import data

    return np.asarray(data.astronaut())


def slow_portrait(h: int, w: int, seed: int = 0) -> np.ndarray:
    """The real portrait enlarged to (h, w), with a little seeded noise so that bodies differ:
    a request that keeps a replica busy (its face is parsed and retouched; a picture without a
    face returns almost at once)."""
    big = np.asarray(Image.fromarray(grace_hopper()).resize((w, h), Image.Resampling.BICUBIC))
    noise = np.random.default_rng(seed).integers(-1, 2, big.shape)
    return np.clip(big.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def crowd() -> np.ndarray:
    """Four faces of four sizes side by side: the real portrait at widths 512, 384, 288 and
    216, its face alone in each (a crowd for the per-photo face cap)."""
    hopper = Image.fromarray(grace_hopper())
    widths = (512, 384, 288, 216)
    canvas = Image.new("RGB", (sum(widths), hopper.height), (128, 128, 128))
    x = 0
    for w in widths:
        canvas.paste(hopper.resize((w, w * hopper.height // hopper.width), Image.BICUBIC), (x, 0))
        x += w
    return np.asarray(canvas)
