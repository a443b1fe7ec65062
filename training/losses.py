"""Training losses. Blemishes cover a few percent of the pixels, so every reconstruction term
is split into a whole-image mean and a mean over the blemish pixels alone: the second keeps the
few defect pixels from being drowned by the many that only need to be left alone."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def split_l1(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(L1 over all pixels, L1 over the pixels where `mask` > 0)."""
    err = (pred - target).abs()
    inside = (err * mask).sum() / (mask.sum() * pred.shape[1]).clamp_min(1.0)
    return err.mean(), inside


def gradient_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 between horizontal and vertical image gradients: keeps skin texture, which a plain
    L1 is happy to blur away."""

    def grads(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]

    px, py = grads(pred)
    tx, ty = grads(target)
    return (px - tx).abs().mean() + (py - ty).abs().mean()


def mask_loss(logits: torch.Tensor, target: torch.Tensor, pos_weight: float) -> torch.Tensor:
    """Weighted BCE plus soft Dice. Plain BCE lets the mask collapse to zero on defects this
    sparse; the positive weight and the Dice term (which only counts the positives) prevent it."""
    bce = F.binary_cross_entropy_with_logits(
        logits, target, pos_weight=torch.tensor(pos_weight, device=logits.device)
    )
    prob = torch.sigmoid(logits)
    inter = (prob * target).sum(dim=(1, 2, 3))
    denom = prob.sum(dim=(1, 2, 3)) + target.sum(dim=(1, 2, 3))
    dice = 1.0 - (2.0 * inter + 1.0) / (denom + 1.0)
    return bce + dice.mean()


def mask_anchor(
    logits: torch.Tensor, teacher_logits: torch.Tensor, target: torch.Tensor
) -> torch.Tensor:
    """How far the mask rises above a frozen teacher's away from the painted defects: the mean
    of max(0, p - p_teacher) over the pixels neither on a target nor next to one.

    Fine-tuning on a painter closer to real lesions teaches the mask to fire on fainter spots,
    and alone it then fires on clean skin too (2-5 times as much, docs/model.md). Anchored, it
    may rise only where there is something to retouch; falling is free."""
    clear = 1.0 - F.max_pool2d(target, 3, 1, 1)
    rise = (torch.sigmoid(logits) - torch.sigmoid(teacher_logits)).clamp_min(0.0)
    return (rise * clear).sum() / clear.sum().clamp_min(1.0)
