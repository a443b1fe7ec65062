"""The classic beauty filter ABPN is compared against: edge-preserving smoothing (a self-guided
guided filter) blended inside a skin-colour mask. It removes blemishes by blurring the skin,
and so also removes texture everywhere on the skin: the trade-off ABPN is built to avoid."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def _box(x: torch.Tensor, r: int) -> torch.Tensor:
    """Mean over a (2r+1)^2 window with edge-normalised counts, via cumulative sums (O(1) per
    pixel whatever r is)."""

    def along(t: torch.Tensor, dim: int) -> torch.Tensor:
        n = t.shape[dim]
        c = torch.cumsum(F.pad(t, (0, 0, 1, 0) if dim == 2 else (1, 0)), dim=dim)
        idx = torch.arange(n)
        hi = (idx + r + 1).clamp(max=n)
        lo = (idx - r).clamp(min=0)
        total = c.index_select(dim, hi) - c.index_select(dim, lo)
        count = (hi - lo).to(t.dtype)
        shape = [1, 1, n, 1] if dim == 2 else [1, 1, 1, n]
        return total / count.view(shape)

    return along(along(x, 2), 3)


def guided_smooth(image: torch.Tensor, radius: int, eps: float) -> torch.Tensor:
    """Self-guided filter (He et al.) per channel: flat regions are averaged, edges whose local
    variance is well above `eps` are kept."""
    mean = _box(image, radius)
    var = _box(image * image, radius) - mean * mean
    a = var / (var + eps)
    b = mean - a * mean
    return _box(a, radius) * image + _box(b, radius)


def skin_mask(image: torch.Tensor, radius: int) -> torch.Tensor:
    """Soft skin mask from the classic YCbCr skin-colour box (Chai and Ngan), smoothed."""
    r, g, b = image[:, 0:1] * 255, image[:, 1:2] * 255, image[:, 2:3] * 255
    cb = 128 - 0.168736 * r - 0.331264 * g + 0.5 * b
    cr = 128 + 0.5 * r - 0.418688 * g - 0.081312 * b
    hard = ((cb >= 77) & (cb <= 127) & (cr >= 133) & (cr <= 173)).to(image.dtype)
    return _box(hard, radius)


def classic_retouch(image: np.ndarray, amount: float = 1.0) -> np.ndarray:
    """Smooth the skin of an (H, W, 3) uint8 photo; radius scales with the photo's size."""
    h, w = image.shape[:2]
    radius = max(2, round(max(h, w) / 100))
    with torch.inference_mode():
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 255
        smooth = guided_smooth(x, radius, eps=0.02**2)
        mask = skin_mask(x, radius) * amount
        out = x + mask * (smooth - x)
        return (out * 255).round().clamp(0, 255).to(torch.uint8)[0].permute(1, 2, 0).numpy()
