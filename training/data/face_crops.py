"""Face regions of the real photos, with the run-time parser's skin masks, cached on disk.

Each training photo is parsed once by :class:`model.faces.FaceParser` (the same code the
engine runs) and every face region is stored as ``data/faces/NAME-K.npz``: the region's pixels,
its soft skin mask and the face width. Training crops then come from exactly what the engine
hands the LRL, and defects are painted only where the engine would let them through.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.data.real_photos import DEFAULT_DIR, load, photos

CACHE_DIR = DEFAULT_DIR.parent / "faces"


@dataclass(frozen=True)
class FaceCrop:
    """One face region of a real photo."""

    name: str
    image: np.ndarray
    """(h, w, 3) uint8: the region as the engine cuts it."""
    skin: np.ndarray
    """(h, w) float32 in [0, 1]: the parser's soft skin mask."""
    face_width: float
    """Width of the face in this crop's pixels."""

    @functools.cached_property
    def skin_area(self) -> float:
        """Sum of the skin mask: how often the sampler picks this crop."""
        return float(self.skin.sum())

    @functools.cached_property
    def mean_skin(self) -> np.ndarray:
        """Mean RGB (0-1) of the plain skin, for the skin-tone jitter."""
        return self.image[self.skin >= 0.75].astype(np.float32).mean(axis=0) / 255.0


def _parse_photo(name: str, photo_dir: Path) -> list[FaceCrop]:
    from model.faces import FaceParser

    image = load(name, photo_dir)
    parser = FaceParser()
    try:
        parse = parser.parse(image)
    finally:
        parser.close()
    crops = []
    for region in parse.regions:
        b = region.box
        crops.append(
            FaceCrop(
                name=name,
                image=np.ascontiguousarray(image[b.y0 : b.y1, b.x0 : b.x1]),
                skin=region.skin.astype(np.float32) / 255.0,
                face_width=max(f.width for f in region.faces),
            )
        )
    return crops


def _save(path: Path, crops: list[FaceCrop]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for k, c in enumerate(crops):
        arrays[f"image{k}"] = c.image
        arrays[f"skin{k}"] = np.rint(c.skin * 255).astype(np.uint8)
        arrays[f"width{k}"] = np.float32(c.face_width)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, count=len(crops), **arrays)
    tmp.replace(path)


def _load(path: Path, name: str) -> list[FaceCrop]:
    with np.load(path) as z:
        return [
            FaceCrop(
                name,
                z[f"image{k}"],
                z[f"skin{k}"].astype(np.float32) / 255.0,
                float(z[f"width{k}"]),
            )
            for k in range(int(z["count"]))
        ]


@functools.cache
def training_faces(
    photo_dir: Path = DEFAULT_DIR, cache_dir: Path = CACHE_DIR
) -> tuple[FaceCrop, ...]:
    """Every face region of the training photos (parsed on first use, then read from cache)."""
    out: list[FaceCrop] = []
    for photo in photos("train"):
        path = cache_dir / f"{photo.name}.npz"
        if not path.is_file():
            _save(path, _parse_photo(photo.name, photo_dir))
        out += _load(path, photo.name)
    if not out:
        raise RuntimeError("no face found in the training photos")
    return tuple(out)


@functools.cache
def negative_photos(photo_dir: Path = DEFAULT_DIR) -> tuple[np.ndarray, ...]:
    """The photos without faces, for samples whose target is the input itself."""
    return tuple(load(p.name, photo_dir) for p in photos("negative"))
