"""Real photographs with faces, taken from registry packages (nothing else can be downloaded).

    python -m training.data.real_photos [--dir data/photos]

fetches the two packages that hold them (Debian's ``opencv-doc``, the ``face-recognition``
sdist from PyPI) and extracts the photos listed in :data:`PHOTOS`; matplotlib's and
scikit-image's photos are read from the installed wheels. Licences and what each photo shows are
in MODEL_CARD.md.

The split is by whole photo: an ``eval`` photo is never read by training (``train`` photos are
the only ones the training sampler opens). ``demo`` photos are for pictures only: one holds real
acne, which as a training target would teach the network to keep blemishes.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

PhotoSplit = Literal["train", "eval", "negative", "demo"]

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "data" / "photos"
_OPENCV_HTML = "usr/share/doc/opencv-doc/opencv4/html"
_OPENCV_DATA = "usr/share/doc/opencv-doc/examples/data"
_FACE_RECOGNITION = "face_recognition-1.3.0/tests/test_images"


@dataclass(frozen=True)
class Photo:
    """One photo: where it comes from and what it is used for."""

    name: str
    package: Literal["opencv-doc", "face-recognition", "matplotlib", "scikit-image"]
    path: str
    split: PhotoSplit
    note: str


PHOTOS: tuple[Photo, ...] = (
    Photo("goatee", "opencv-doc", f"{_OPENCV_HTML}/230501201_1.jpg", "train", "man, goatee"),
    Photo("obama", "face-recognition", f"{_FACE_RECOGNITION}/obama.jpg", "train", "dark skin"),
    Photo("obama2", "face-recognition", f"{_FACE_RECOGNITION}/obama2.jpg", "train", "dark skin"),
    Photo("hopper", "matplotlib", "sample_data/grace_hopper.jpg", "train", "older woman"),
    Photo("astronaut", "scikit-image", "astronaut", "train", "woman, busy background"),
    Photo("smiling", "opencv-doc", f"{_OPENCV_HTML}/227943776_1.jpg", "eval", "smiling man"),
    Photo("obama3", "face-recognition", f"{_FACE_RECOGNITION}/obama3.jpg", "eval", "full figure"),
    Photo("biden", "face-recognition", f"{_FACE_RECOGNITION}/biden.jpg", "eval", "older man"),
    Photo("lena", "opencv-doc", f"{_OPENCV_HTML}/blurred.png", "eval", "hat, feathers"),
    Photo("group12", "opencv-doc", f"{_OPENCV_HTML}/3.jpg", "eval", "12 faces, one photo"),
    Photo("acne", "opencv-doc", f"{_OPENCV_HTML}/example.jpg", "demo", "real acne, glasses"),
    Photo("fruits", "opencv-doc", f"{_OPENCV_DATA}/fruits.jpg", "negative", "no face"),
    Photo("baboon", "opencv-doc", f"{_OPENCV_DATA}/baboon.jpg", "negative", "no face"),
    Photo("building", "opencv-doc", f"{_OPENCV_DATA}/building.jpg", "negative", "no face"),
    Photo("home", "opencv-doc", f"{_OPENCV_DATA}/home.jpg", "negative", "no face"),
    Photo("orange", "opencv-doc", f"{_OPENCV_DATA}/orange.jpg", "negative", "no face"),
    Photo("starry", "opencv-doc", f"{_OPENCV_DATA}/starry_night.jpg", "negative", "no face"),
    Photo("squirrel", "opencv-doc", f"{_OPENCV_HTML}/squirrel_cls.jpg", "negative", "no face"),
)


def photos(split: PhotoSplit) -> tuple[Photo, ...]:
    """The photos of one split, in catalogue order."""
    return tuple(p for p in PHOTOS if p.split == split)


def _run(cmd: list[str], cwd: Path) -> None:
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL)


def _installed(package: str, path: str) -> np.ndarray:
    if package == "matplotlib":
        import matplotlib

        return np.asarray(Image.open(Path(matplotlib.get_data_path()) / path).convert("RGB"))
    from skimage import data

    return np.asarray(getattr(data, path)())


def fetch(dest: Path = DEFAULT_DIR) -> list[Path]:
    """Download the packages, extract every catalogued photo to ``dest/NAME.png``; returns the
    paths written. Photos already there are kept."""
    dest.mkdir(parents=True, exist_ok=True)
    missing = [p for p in PHOTOS if not (dest / f"{p.name}.png").is_file()]
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if any(p.package == "opencv-doc" for p in missing):
            _run(["apt-get", "download", "opencv-doc"], work)
            deb = next(work.glob("opencv-doc_*.deb"))
            _run(["dpkg-deb", "-x", str(deb), "x"], work)
        if any(p.package == "face-recognition" for p in missing):
            _run(
                [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary",
                 ":all:", "face-recognition==1.3.0", "-d", "."],
                work,
            )  # fmt: skip
            with tarfile.open(next(work.glob("face_recognition-*.tar.gz"))) as tar:
                tar.extractall(work, filter="data")
        for p in missing:
            if p.package in ("matplotlib", "scikit-image"):
                pixels = _installed(p.package, p.path)
            else:
                root = work / "x" if p.package == "opencv-doc" else work
                pixels = np.asarray(Image.open(root / p.path).convert("RGB"))
            out = dest / f"{p.name}.png"
            Image.fromarray(pixels).save(out)
            written.append(out)
    return written


def load(name: str, directory: Path = DEFAULT_DIR) -> np.ndarray:
    """An extracted photo as (H, W, 3) uint8 RGB; run :func:`fetch` first."""
    path = directory / f"{name}.png"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run `python -m training.data.real_photos`")
    return np.asarray(Image.open(path).convert("RGB"))


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point: fetch and extract the photos."""
    parser = argparse.ArgumentParser(description="Fetch the real photos used for training.")
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    args = parser.parse_args(argv)
    for path in fetch(args.dir):
        print(path)


if __name__ == "__main__":
    main()
