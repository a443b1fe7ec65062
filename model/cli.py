"""abpn-retouch: retouch photo files from the command line.

    abpn-retouch INPUT... -o OUT_DIR [--strength S] [--whitening W] [--mask]
        [--weights PATH|random]
        [--device DEVICE] [--compile] [--quality Q]

Each result is written to OUT_DIR under the input's file name in the input's format (PNG stays
lossless), with EXIF orientation applied and the ICC profile kept. A file that cannot be read
is reported and skipped; the exit status is then 1, after every other file is done. Only faces
are retouched: a photo in which no face is found is written unchanged (and said so).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import torch
from tqdm import tqdm

from model import allocator
from model.engine import RetouchEngine
from model.photo import PhotoError, decode, encode_mask, write_file
from model.result import MAX_STRENGTH, MAX_WHITENING
from model.weights import RANDOM, CheckpointError, load_model


def _within(top: float):
    def parse(text: str) -> float:
        value = float(text)
        if not 0.0 <= value <= top:
            raise argparse.ArgumentTypeError(f"must be within 0 and {top}")
        return value

    return parse


def _quality(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 100:
        raise argparse.ArgumentTypeError("must be within 1 and 100")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command's argument parser."""
    parser = argparse.ArgumentParser(
        prog="abpn-retouch", description="Retouch portrait photos with ABPN."
    )
    parser.add_argument("inputs", nargs="+", type=Path, metavar="INPUT")
    parser.add_argument("-o", "--out-dir", type=Path, required=True, metavar="OUT_DIR")
    parser.add_argument(
        "--strength", type=_within(MAX_STRENGTH), default=1.0, help="0 to 1.5 (default 1)"
    )
    parser.add_argument(
        "--whitening",
        type=_within(MAX_WHITENING),
        default=0.0,
        help="lighten the skin, 0 to 1.5 (default 0: off)",
    )
    parser.add_argument(
        "--mask",
        action="store_true",
        help="also write the retouch mask (gated by the skin mask) as NAME.mask.png",
    )
    parser.add_argument(
        "--weights",
        default=None,
        help=f"checkpoint path (default: the shipped weights); '{RANDOM}' for an untrained net",
    )
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: auto)")
    parser.add_argument(
        "--compile",
        action="store_true",
        help="CPU: compile the LRL first (seconds to a minute, once; then ~1.5x faster per face)",
    )
    parser.add_argument("--quality", type=_quality, default=None, help="JPEG/WebP quality")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the process exit status."""
    args = build_parser().parse_args(argv)
    if allocator.wanted():
        allocator.tune_malloc()
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        loaded = load_model(args.weights)
        engine = RetouchEngine(loaded.model, device=device, compile_lrl=args.compile)
        if args.compile:
            engine.warmup()
    except (CheckpointError, RuntimeError, ValueError) as exc:
        print(f"abpn-retouch: cannot load the model: {exc}", file=sys.stderr)
        return 2
    if args.weights == RANDOM:
        print("abpn-retouch: warning: using an untrained, random network", file=sys.stderr)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    failures = 0
    for path in tqdm(args.inputs, unit="photo", disable=len(args.inputs) < 2):
        try:
            data = path.read_bytes()
            photo = decode(data)
            result = engine.retouch(photo.rgb, args.strength, args.mask, args.whitening)
            if result.faces == 0:
                tqdm.write(f"abpn-retouch: {path}: no face found, written unchanged", sys.stderr)
            target = args.out_dir / path.name
            if not photo.reoriented and result.untouched:
                target.write_bytes(data)  # the file as it was, not a lossy re-encoding
            else:
                write_file(replace(photo, rgb=result.image), target, photo.format, args.quality)
            if result.mask is not None:
                (args.out_dir / f"{path.stem}.mask.png").write_bytes(
                    encode_mask(result.mask, "png")
                )
        except (OSError, PhotoError) as exc:
            failures += 1
            tqdm.write(f"abpn-retouch: {path}: {exc}", file=sys.stderr)
    return 1 if failures else 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
