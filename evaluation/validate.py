"""Choose the inference mask threshold on a validation set drawn from the *training* photos.

    python -m evaluation.validate --weights runs/faces/abpn.safetensors [--n 64] [--seed 4321]
        [--thresholds 0.3 0.5 0.7]

The samples come from the training sampler with a seed training does not use (fresh windows,
defects and scales), so neither the evaluation photos nor the independent painter play any part
in the choice. Each threshold is scored like the synthetic table (`evaluation.synthetic`).
"""

from __future__ import annotations

import argparse

import numpy as np

from evaluation.synthetic import evaluate, table
from training.data.face_samples import MixedSampler


def main(argv: list[str] | None = None) -> None:
    """Print one table per threshold."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", required=True)
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--seed", type=int, default=4321)
    parser.add_argument("--size", type=int, default=192)
    parser.add_argument("--lrl-size", type=int, default=384)
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.3, 0.5, 0.7])
    args = parser.parse_args(argv)
    sampler = MixedSampler(args.seed, args.size, args.lrl_size)
    samples = [s for s in (sampler.sample() for _ in range(4 * args.n)) if s.mask.any()]
    samples = samples[: args.n]
    share = np.mean([s.mask.mean() for s in samples])
    print(f"{len(samples)} validation samples with defects, {100 * share:.1f}% of pixels masked")
    for threshold in args.thresholds:
        print(f"\nmask threshold {threshold}:")
        print(table(evaluate(samples, args.weights, threshold)))


if __name__ == "__main__":
    main()
