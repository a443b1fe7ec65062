"""Blind side-by-side pictures of single real lesions, two methods at a time, for judging by eye.

The disc-against-ring contrast rewards a fill that makes a lesion's disc match the ring just
around it, whatever is left in that ring (a red rim, a blotch); the wide ring sees part of that.
A person looking at the skin sees all of it. This renders, for lesions drawn at random from
every measured mark, one picture each: the crop before (the lesion circled), then the two
methods' results (ABPN and detect and fill, or two ABPN checkpoints with `--versus`) as "1"
and "2" in a random order, each panel enlarged to about 192 px. The key (which method is
which, and each one's disc-against-ring share removed) goes to a separate file, so a judge can
be shown the pictures alone and answer "1", "2" or "same" per picture; `score` tallies the
answers.

    python -m evaluation.lesions.pairs render --out /tmp/pairs --key /tmp/pairs-key.json \
        [--n 60] [--seed 0] [--size native|1280] [--weights PATH] [--versus PATH]
    python -m evaluation.lesions.pairs score --key /tmp/pairs-key.json --answers answers.json

The photos are for research only: keep the pictures out of the repository.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from evaluation.lesions.marks import MARKS, load_marked, load_marks, photo_path
from evaluation.lesions.measure import Lesion, lesion_contrast, share_removed, to_lab
from evaluation.lesions.pictures import panel_strip

# Half the crop's side: four radii shows a lesion's rim and the skin beyond it; the floor keeps
# small marks in a crop a person can read.
CROP_RADII = 4.0
MIN_HALF = 16
# Each panel is enlarged (nearest) to about this many pixels a side, so that a crop of a small
# photo and one of a large photo read the same.
PANEL = 192
ANSWERS = ("1", "2", "same")


@dataclass(frozen=True)
class Pair:
    """One picture: which lesion, and which method is shown as "1" and which as "2"."""

    photo: str
    index: int
    first: str
    second: str


def draw_pairs(
    lesions: Mapping[str, list[Lesion]],
    measured: Mapping[str, np.ndarray],
    methods: tuple[str, str],
    n: int,
    seed: int,
) -> list[Pair]:
    """`n` lesions drawn uniformly, without replacement, from those whose contrast was measured
    (`measured[photo]` is True per lesion), each with the two methods in a random order."""
    pool = [(p, i) for p in sorted(lesions) for i in np.flatnonzero(measured[p])]
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(pool), size=min(n, len(pool)), replace=False)
    pairs = []
    for k in picked:
        photo, index = pool[int(k)]
        first, second = methods if rng.random() < 0.5 else methods[::-1]
        pairs.append(Pair(photo, int(index), first, second))
    return pairs


def crop_box(shape: tuple[int, ...], lesion: Lesion) -> tuple[int, int, int, int]:
    """The square (x0, y0, x1, y1) around `lesion` shown in its picture, inside the photo."""
    half = max(MIN_HALF, round(CROP_RADII * lesion.r))
    h, w = shape[:2]
    x0, y0 = max(0, round(lesion.x) - half), max(0, round(lesion.y) - half)
    return x0, y0, min(w, round(lesion.x) + half), min(h, round(lesion.y) + half)


def render_pair(
    before: np.ndarray, first: np.ndarray, second: np.ndarray, lesion: Lesion
) -> Image.Image:
    """The picture of one pair: the crop before with the lesion circled, then "1" and "2"."""
    x0, y0, x1, y1 = crop_box(before.shape, lesion)
    marked = Image.fromarray(np.ascontiguousarray(before[y0:y1, x0:x1]))
    # The circle sits outside the lesion's rim so that it hides none of it.
    r = lesion.r + 3
    cx, cy = lesion.x - x0, lesion.y - y0
    ImageDraw.Draw(marked).ellipse([cx - r, cy - r, cx + r, cy + r], outline=(255, 255, 255))
    panels = [np.asarray(marked), first[y0:y1, x0:x1], second[y0:y1, x0:x1]]
    zoom = max(1, round(PANEL / max(x1 - x0, y1 - y0)))
    return panel_strip(panels, zoom, ["before", "1", "2"])


def score(key: list[dict], answers: Mapping[str, str]) -> dict:
    """Tally `answers` (picture name -> "1", "2" or "same") against `key`: per method, how often
    it was preferred, overall and where the disc-against-ring measure put the other one ahead
    by more than 0.05. Pictures with no answer are counted as unanswered."""
    methods = sorted({entry["first"] for entry in key} | {entry["second"] for entry in key})
    groups = {"all": key}
    for m in methods:
        other = next(o for o in methods if o != m)
        groups[f"disc measure favours {other}"] = [
            e for e in key if e["removed"][other] - e["removed"][m] > 0.05
        ]
    out = {}
    for group, entries in groups.items():
        tally = dict.fromkeys([*methods, "same", "unanswered"], 0)
        for e in entries:
            answer = answers.get(e["picture"])
            if answer is None:
                tally["unanswered"] += 1
            elif answer not in ANSWERS:
                raise ValueError(f"{e['picture']}: answer {answer!r} is not one of {ANSWERS}")
            elif answer == "same":
                tally["same"] += 1
            else:
                tally[e["first"] if answer == "1" else e["second"]] += 1
        out[group] = {"pictures": len(entries), **tally}
    return out


def _render(args: argparse.Namespace) -> int:
    import torch

    from evaluation.lesions.fill import detect_and_fill
    from model.engine import RetouchEngine
    from model.weights import load_model

    marks = load_marks(args.marks)
    present = {n: m for n, m in marks.items() if photo_path(args.photos, n).is_file()}
    if not present:
        print(f"no marked photos found in {args.photos}: extract them first")
        return 0
    torch.set_num_threads(1)
    engine = RetouchEngine(load_model(args.weights).model)
    # The second method: detect and fill, or ABPN with another checkpoint (two versions).
    versus = RetouchEngine(load_model(args.versus).model) if args.versus else None
    methods = ("abpn", "versus" if versus else "detect_fill")
    outputs, measured, removed = {}, {}, {}
    for name in list(present):
        image, lesions = load_marked(args.photos, name, present[name], args.size)
        present[name] = lesions
        parse = engine.parse(image)
        (res,) = engine.retouch_batch([image], 1.0, True, parses=[parse])
        if versus is None:
            other, _ = detect_and_fill(image, parse.skin_mask(image.shape[:2]))
        else:
            other = versus.retouch_batch([image], 1.0, True, parses=[parse])[0].image
        outputs[name] = {"before": image, methods[0]: res.image, methods[1]: other}
        before = lesion_contrast(to_lab(image), lesions)
        removed[name] = {
            m: share_removed(before, lesion_contrast(to_lab(outputs[name][m]), lesions))
            for m in methods
        }
        # The lesions the evaluation's tables count: those with a share removed.
        measured[name] = ~np.isnan(removed[name]["abpn"])
    args.out.mkdir(parents=True, exist_ok=True)
    key = []
    pairs = draw_pairs(present, measured, methods, args.n, args.seed)
    for k, pair in enumerate(pairs):
        out = outputs[pair.photo]
        lesion = present[pair.photo][pair.index]
        picture = f"pair_{k:03d}.png"
        render_pair(out["before"], out[pair.first], out[pair.second], lesion).save(
            args.out / picture
        )
        shares = removed[pair.photo]
        key.append(
            {
                "picture": picture,
                "photo": pair.photo,
                "index": pair.index,
                "first": pair.first,
                "second": pair.second,
                "removed": {m: round(float(v[pair.index]), 4) for m, v in shares.items()},
            }
        )
    args.key.write_text(json.dumps(key, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {len(pairs)} pictures to {args.out}, the key to {args.key}")
    return 0


def _score(args: argparse.Namespace) -> int:
    key = json.loads(args.key.read_text(encoding="utf-8"))
    answers = json.loads(args.answers.read_text(encoding="utf-8"))
    result = score(key, answers)
    for group, tally in result.items():
        print(f"{group}: " + ", ".join(f"{k} {v}" for k, v in tally.items()))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command line (see the module's docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    render = sub.add_parser("render", help="write the pictures and their key")
    render.add_argument("--photos", type=Path, default=Path("data/lesions"))
    render.add_argument("--marks", type=Path, default=MARKS)
    render.add_argument("--out", type=Path, required=True, help="folder for the pictures")
    render.add_argument("--key", type=Path, required=True, help="the key's file, kept apart")
    render.add_argument("--size", default="native", help="native, or a long side in px")
    render.add_argument("--n", type=int, default=60)
    render.add_argument("--seed", type=int, default=0)
    render.add_argument("--weights", default=None, help="ABPN's checkpoint (the shipped one)")
    render.add_argument(
        "--versus", default=None, help="a second ABPN checkpoint, shown instead of detect and fill"
    )
    tally = sub.add_parser("score", help="tally a judge's answers against the key")
    tally.add_argument("--key", type=Path, required=True)
    tally.add_argument("--answers", type=Path, required=True, help='{"pair_000.png": "1", ...}')
    args = parser.parse_args(argv)
    return _render(args) if args.command == "render" else _score(args)


if __name__ == "__main__":
    raise SystemExit(main())
