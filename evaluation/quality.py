"""Image quality measures for evaluation: PSNR (whole, inside and outside a mask) and SSIM."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

PSNR_CAP_DB = 100.0
"""PSNR reported for a zero error (identical pixels), so tables and JSON stay finite."""


def psnr_from_mse(mse: float) -> float:
    """PSNR in dB for 8-bit images from a mean squared error in [0, 1] units."""
    if mse <= 10 ** (-PSNR_CAP_DB / 10):
        return PSNR_CAP_DB
    return -10.0 * math.log10(mse)


def squared_error(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel squared error of two uint8 (H, W, 3) images, averaged over channels."""
    diff = a.astype(np.float32) / 255.0 - b.astype(np.float32) / 255.0
    return (diff * diff).mean(axis=-1)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = (g / g.sum()).float()
    return g[:, None] * g[None, :]


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM (Wang et al., 11x11 Gaussian window, sigma 1.5) over the three channels."""
    x = torch.from_numpy(a).permute(2, 0, 1)[:, None].double() / 255.0
    y = torch.from_numpy(b).permute(2, 0, 1)[:, None].double() / 255.0
    w = _gaussian_window().double()[None, None]
    mu_x, mu_y = F.conv2d(x, w), F.conv2d(y, w)
    var_x = F.conv2d(x * x, w) - mu_x**2
    var_y = F.conv2d(y * y, w) - mu_y**2
    cov = F.conv2d(x * y, w) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    )
    return float(s.mean())


def mask_counts(pred: np.ndarray, truth: np.ndarray) -> tuple[int, int, int]:
    """(true positives, false positives, false negatives) of two boolean masks, for pooling
    into F1 and IoU over a whole set."""
    return (
        int(np.count_nonzero(pred & truth)),
        int(np.count_nonzero(pred & ~truth)),
        int(np.count_nonzero(~pred & truth)),
    )
