"""The synthetic set's scores: identity, the classic filter and ABPN on painted samples.

Whole-image PSNR and SSIM are averaged per image; PSNR inside and outside the blemish masks
pools the squared error of all those pixels over the set (images with few blemish pixels would
otherwise swing the mean); identical pixels count as 100 dB. ABPN runs through the inference
engine (uint8 in and out), exactly as the service runs it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from evaluation.baseline import classic_retouch
from evaluation.quality import mask_counts, psnr_from_mse, squared_error, ssim
from evaluation.tables import markdown_table
from model.engine import RetouchEngine
from model.faces import FaceParse
from model.weights import load_model
from training.data.dataset import Sample

MASK_CUTOFF = 0.5
"""Mask quality is measured with the predicted mask binarised at this value."""


@dataclass
class MethodScores:
    """The figures of one method over the set."""

    method: str
    psnr: float
    ssim: float
    psnr_inside: float
    psnr_outside: float
    mask_f1: float | None = None
    mask_iou: float | None = None


Retoucher = Callable[[list[np.ndarray]], tuple[list[np.ndarray], list[np.ndarray] | None]]


def score(method: str, samples: Sequence[Sample], retouch: Retoucher) -> MethodScores:
    """Run `retouch` over the samples' inputs and score the outputs against their targets."""
    outputs, masks = retouch([s.input for s in samples])
    psnrs, ssims = [], []
    inside_se = outside_se = 0.0
    inside_n = outside_n = 0
    tp = fp = fn = 0
    for i, (sample, out) in enumerate(zip(samples, outputs, strict=True)):
        se = squared_error(out, sample.target)
        psnrs.append(psnr_from_mse(float(se.mean())))
        ssims.append(ssim(out, sample.target))
        inside_se += float(se[sample.mask].sum())
        outside_se += float(se[~sample.mask].sum())
        inside_n += int(sample.mask.sum())
        outside_n += int((~sample.mask).sum())
        if masks is not None:
            counts = mask_counts(masks[i] >= MASK_CUTOFF * 255, sample.mask)
            tp, fp, fn = tp + counts[0], fp + counts[1], fn + counts[2]
    scores = MethodScores(
        method=method,
        psnr=float(np.mean(psnrs)),
        ssim=float(np.mean(ssims)),
        psnr_inside=psnr_from_mse(inside_se / max(inside_n, 1)),
        psnr_outside=psnr_from_mse(outside_se / max(outside_n, 1)),
    )
    if masks is not None:
        scores.mask_f1 = 2 * tp / max(2 * tp + fp + fn, 1)
        scores.mask_iou = tp / max(tp + fp + fn, 1)
    return scores


def evaluate(
    samples: Sequence[Sample],
    weights: str | None,
    mask_threshold: float | None = None,
    batch_size: int = 8,
) -> list[MethodScores]:
    """Scores of identity, the classic filter and ABPN on the same samples; `mask_threshold`
    overrides the checkpoint's (to choose it on a validation set)."""
    model = load_model(weights).model
    if mask_threshold is not None:
        model.set_mask_threshold(mask_threshold)
    engine = RetouchEngine(model)

    def abpn(images: list[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        results = []
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            parses = [FaceParse.whole(i.shape[:2]) for i in chunk]
            results += engine.retouch_batch(chunk, 1.0, True, parses=parses)
        return [r.image for r in results], [r.mask for r in results]

    return [
        score("identity", samples, lambda images: (images, None)),
        score(
            "classic filter", samples, lambda images: ([classic_retouch(i) for i in images], None)
        ),
        score("ABPN", samples, abpn),
    ]


def _cell(v: float | None, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def table(rows: Sequence[MethodScores]) -> str:
    """Markdown table of the scores."""
    header = (
        "method", "PSNR dB", "SSIM", "PSNR inside masks dB", "PSNR outside masks dB", "mask F1",
        "mask IoU",
    )  # fmt: skip
    return markdown_table(
        header,
        (
            (
                r.method,
                f"{r.psnr:.2f}",
                f"{r.ssim:.4f}",
                f"{r.psnr_inside:.2f}",
                f"{r.psnr_outside:.2f}",
                _cell(r.mask_f1, ".3f"),
                _cell(r.mask_iou, ".3f"),
            )
            for r in rows
        ),
    )
