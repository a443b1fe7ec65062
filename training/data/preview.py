"""Contact sheets of synthetic pairs, for checking by eye that defects look like real skin.

``python -m training.data.preview --out docs/images/synth_examples.png`` renders samples of the
fixed evaluation set as rows of input | target | mask.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from .dataset import Sample, make_eval_set


def contact_sheet(samples: Sequence[Sample], gap: int = 4, zoom: int = 1) -> np.ndarray:
    """Stack samples as rows of input | target | mask (uint8 RGB), ``zoom`` x nearest-neighbour."""
    rows = []
    for s in samples:
        mask = np.repeat((s.mask * 255).astype(np.uint8)[..., None], 3, axis=-1)
        cells = [s.input, s.target, mask]
        if zoom > 1:
            cells = [c.repeat(zoom, axis=0).repeat(zoom, axis=1) for c in cells]
        h = cells[0].shape[0]
        spacer = np.full((h, gap, 3), 255, np.uint8)
        rows.append(np.concatenate([cells[0], spacer, cells[1], spacer, cells[2]], axis=1))
    width = max(r.shape[1] for r in rows)
    out = []
    for r in rows:
        pad = np.full((r.shape[0], width - r.shape[1], 3), 255, np.uint8)
        out += [np.concatenate([r, pad], axis=1), np.full((gap, width, 3), 255, np.uint8)]
    return np.concatenate(out[:-1], axis=0)


def main(argv: Sequence[str] | None = None) -> None:
    """Render a contact sheet of evaluation samples to a PNG file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/images/synth_examples.png"))
    parser.add_argument("--indices", type=int, nargs="+", default=[8, 1, 6, 3, 9])
    parser.add_argument("--size", type=int, default=192)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--zoom", type=int, default=2)
    args = parser.parse_args(argv)
    samples = make_eval_set(n=max(args.indices) + 1, size=args.size, seed=args.seed)
    sheet = contact_sheet([samples[i] for i in args.indices], zoom=args.zoom)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(sheet).save(args.out, optimize=True)
    print(f"wrote {args.out} ({sheet.shape[1]}x{sheet.shape[0]})")


if __name__ == "__main__":
    main()
