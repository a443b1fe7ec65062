"""Evaluate ABPN: held-out real photos (two painters, 2K-8K, clean photos) and the synthetic set.

    python -m evaluation.evaluate [--weights PATH|random] [--suite all|real|synthetic] [--quick]
        [--draws N] [--whole-photo] [--n 48] [--size 256] [--seed 1234]
        [--out bench/results/evaluate.json]

The real-photo part is ``evaluation.evaluate_real`` (run ``python -m training.data.real_photos``
once first). The synthetic set is the original table: 256-pixel crops of the training painter's
defects on the portraits' held-out halves and on textures; these crops hold skin but no whole
face, so ABPN runs on each crop as one all-skin region (the network itself, without parsing).

Scoring of the synthetic set: ``evaluation.synthetic``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from evaluation.synthetic import evaluate, table
from model.engine import RetouchEngine
from model.weights import load_model
from training.data.dataset import make_eval_set


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point: print the tables and write the JSON."""
    parser = argparse.ArgumentParser(description="Evaluate ABPN on held-out data.")
    parser.add_argument("--weights", default=None, help="checkpoint path or 'random'")
    parser.add_argument("--suite", choices=["all", "real", "synthetic"], default="all")
    parser.add_argument("--quick", action="store_true", help="real photos at 2K only")
    parser.add_argument(
        "--draws", type=int, default=1, help="real photos: paint each photo N times (pooled)"
    )
    parser.add_argument(
        "--whole-photo",
        action="store_true",
        help="real photos: run ABPN on the whole photo, without faces or skin gate (as v1 did)",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="real photos: run the compiled LRL, as CPU replicas of the service do",
    )
    parser.add_argument("--n", type=int, default=48)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--mask-threshold", type=float, default=None)
    parser.add_argument("--out", type=Path, default=Path("bench/results/evaluate.json"))
    args = parser.parse_args(argv)
    report: dict = {
        "meta": {
            "n": args.n,
            "size": args.size,
            "seed": args.seed,
            "weights": args.weights or "default",
            "mask_threshold": args.mask_threshold,
            "suite": args.suite,
            "quick": args.quick,
            "draws": args.draws,
            "whole_photo": args.whole_photo,
            "compiled_lrl": args.compile,
        }
    }
    if args.suite in ("all", "real"):
        from evaluation.evaluate_real import run

        model = load_model(args.weights).model
        if args.mask_threshold is not None:
            model.set_mask_threshold(args.mask_threshold)
        engine = RetouchEngine(model, compile_lrl=args.compile)
        engine.warmup()
        report["real"] = run(engine, args.quick, args.whole_photo, args.draws)
        print("Held-out real photos, painted defects (PSNR dB, pooled):")
        print(report["real"]["tables"]["painted"])
        print("\nHeld-out clean photos:")
        print(report["real"]["tables"]["clean"])
    if args.suite in ("all", "synthetic"):
        samples = make_eval_set(n=args.n, size=args.size, seed=args.seed)
        rows = evaluate(samples, args.weights, args.mask_threshold)
        print("\nSynthetic set (training painter, 256-px crops):")
        print(table(rows))
        report["rows"] = [r.__dict__ for r in rows]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"JSON: {args.out}")


if __name__ == "__main__":
    main()
