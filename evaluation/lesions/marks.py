"""The hand-made lesion marks (`marks.json`) and where each marked photo lies once extracted."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from evaluation.lesions.extract import MANIFEST, load_manifest
from evaluation.lesions.measure import Lesion

MARKS = Path(__file__).with_name("marks.json")
KINDS = ("papule", "pustule", "mark", "other")


def load_marks(path: Path = MARKS) -> dict[str, list[Lesion]]:
    """Photo name -> its lesions, in pixels of the extracted photo at its native size."""
    raw = json.loads(path.read_text(encoding="utf-8"))
    out: dict[str, list[Lesion]] = {}
    for name, rows in raw["photos"].items():
        lesions = []
        for x, y, r, kind in rows:
            if kind not in KINDS or r <= 0:
                raise ValueError(f"{name}: bad mark {[x, y, r, kind]}")
            lesions.append(Lesion(float(x), float(y), float(r), kind))
        out[name] = lesions
    return out


def photo_path(folder: Path, name: str, manifest: Path = MANIFEST) -> Path:
    """The extracted file of photo `name` inside `folder`."""
    files = {p["name"]: p["file"] for p in load_manifest(manifest)["photos"]}
    return folder / files[name]


def load_marked(
    folder: Path, name: str, lesions: list[Lesion], size: str = "native"
) -> tuple[np.ndarray, list[Lesion]]:
    """Photo `name` as RGB, at its native size or resized to a long side of `size` px, and its
    `lesions` scaled with it."""
    from model.photo import resize_long_side

    image = np.asarray(Image.open(photo_path(folder, name)).convert("RGB"))
    if size == "native":
        return image, lesions
    factor = int(size) / max(image.shape[:2])
    return resize_long_side(image, int(size)), [les.scaled(factor) for les in lesions]
