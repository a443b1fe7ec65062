"""How much of the real lesions the skin gate lets through, and whether face parts leak in.

    python -m training.lesions.coverage DIR [DIR ...]

For every photo (``*.jpg``, ``*.png``) of the folders: the strict lesion-like spots of each face
(:mod:`training.lesions.spots`), the share whose centre lies inside the gate (hard: skin mask > 0;
soft: skin mask >= 0.5, where the retouch applies at least half its change), and the pixels of
the eyes, brows, lips and nostrils (the landmarks' bare hulls) that the gate marks as skin, which
must be 0. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

from model.faces import FaceParser, protected_parts
from training.lesions.spots import find_spots


def measure(paths: list[Path]) -> dict:
    """Strict spots, their shares inside the hard and soft gate, and leaked part pixels."""
    parser = FaceParser()
    spots = hard = soft = leaked = 0
    try:
        for path in paths:
            image = np.asarray(Image.open(path).convert("RGB"))
            parse = parser.parse(image)
            skin = parse.skin_mask(image.shape[:2])
            for face in parse.faces:
                if face.landmarks is None:
                    continue
                # A face size of 0: the parts' bare hulls, without the gate's margins.
                parts = protected_parts(image.shape[:2], face.landmarks, 0.0) > 0
                leaked += int((skin[parts] > 0).sum())
                for s in find_spots(image, face):
                    if s.strict:
                        value = skin[round(s.y), round(s.x)]
                        spots += 1
                        hard += value > 0
                        soft += value >= 128
    finally:
        parser.close()
    return {
        "photos": len(paths),
        "strict_spots": spots,
        "inside_hard": round(hard / max(spots, 1), 3),
        "inside_soft": round(soft / max(spots, 1), 3),
        "part_pixels_in_gate": leaked,
    }


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dirs", type=Path, nargs="+")
    args = parser.parse_args(argv)
    paths = sorted(p for d in args.dirs for p in d.iterdir() if p.suffix in (".jpg", ".png"))
    print(json.dumps(measure(paths)))


if __name__ == "__main__":
    main()
