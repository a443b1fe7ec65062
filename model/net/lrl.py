"""LRL, the context-aware local retouching layer, run on a downsampled copy of the photo.

A shared encoder feeds two decoders: the mask prediction branch (MPB) finds what to retouch,
and the local retouching branch (LRB, gated convolutions + local attention) paints what should
be there. The LRB does not start from nothing: it refines a normalised-convolution fill that
averages the surrounding unmasked skin into the masked pixels, so it only has to learn the
correction. Unmasked pixels are returned as they were: R = M G + (1 - M) I.

Inputs are padded to a shared canvas for batching. Every block re-applies the valid-pixel mask
and upsampling is nearest-neighbour, so padding never leaks into real pixels and a photo gives
the same result alone or batched with photos of other sizes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from model.net.blocks import ConvAct, GatedConv, LocalAttention
from model.net.config import ABPNConfig


@dataclass
class LRLOutput:
    """What the low-resolution layer returns, all on the padded canvas."""

    result: torch.Tensor
    """R_low, the retouched low-resolution image (B, 3, h, w)."""
    mask: torch.Tensor
    """Effective soft mask in [0, 1], exactly 0 at or below the threshold (B, 1, h, w)."""
    mask_logits: torch.Tensor
    """Raw mask logits, for the mask loss (B, 1, h, w)."""


def gaussian_kernel(sigma: float) -> torch.Tensor:
    """Normalised 1-D Gaussian taps covering +-3 sigma."""
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def blur(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur with zero padding, per channel."""
    c = x.shape[1]
    k = kernel.to(dtype=x.dtype)
    pad = k.numel() // 2
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), padding=(0, pad), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), padding=(pad, 0), groups=c)


def normalized_fill(
    image: torch.Tensor, weight: torch.Tensor, kernel: torch.Tensor, coarse: int
) -> torch.Tensor:
    """Weighted local average of `image` (normalised convolution) at two scales.

    Pixels with weight 0 (masked or padding) take the average of their weighted neighbours; the
    coarse scale (pooled by `coarse`) fills holes wider than the fine kernel reaches. Always
    float32: in half precision the tiny denominators far from any support would underflow.
    """
    with torch.autocast(device_type=image.device.type, enabled=False):
        return _normalized_fill(image.float(), weight.float(), kernel.float(), coarse)


def _normalized_fill(
    image: torch.Tensor, weight: torch.Tensor, kernel: torch.Tensor, coarse: int
) -> torch.Tensor:
    num = blur(image * weight, kernel)
    den = blur(weight, kernel)
    pooled_num = F.avg_pool2d(image * weight, coarse)
    pooled_den = F.avg_pool2d(weight, coarse)
    coarse_num = F.interpolate(blur(pooled_num, kernel), scale_factor=coarse, mode="nearest")
    coarse_den = F.interpolate(blur(pooled_den, kernel), scale_factor=coarse, mode="nearest")
    # The coarse term only matters where the fine one has (almost) no support.
    eps = 1e-3
    return (num + eps * coarse_num) / (den + eps * coarse_den + 1e-8)


def halved_fill(
    image: torch.Tensor, weight: torch.Tensor, sigma: float, coarse: int
) -> torch.Tensor:
    """`normalized_fill` with a Gaussian of `sigma`, run at half the resolution and resized
    back: a wide fill is smooth, and at half size its kernel has half the taps over a quarter
    of the pixels. `image`'s sides must be multiples of 2 * `coarse`."""
    with torch.autocast(device_type=image.device.type, enabled=False):
        image, weight = image.float(), weight.float()
        den = F.avg_pool2d(weight, 2)
        # Normalised convolution of the pooled pixels with the pooled weights is the same sum
        # as pooling inside it: blur(pool(image * weight)) / blur(pool(weight)).
        pooled = F.avg_pool2d(image * weight, 2) / den.clamp_min(1e-8)
        kernel = gaussian_kernel(sigma / 2).to(image.device)
        half = _normalized_fill(pooled, den, kernel, coarse)
        return F.interpolate(half, size=image.shape[-2:], mode="bilinear", align_corners=False)


# Rec. 601 luma weights: brightness as a viewer sees a pale speck.
_LUMA = (0.299, 0.587, 0.114)


def luma(x: torch.Tensor) -> torch.Tensor:
    """Rec. 601 luma of (B, 3, h, w) RGB, as (B, 1, h, w)."""
    w = torch.tensor(_LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def chroma(x: torch.Tensor) -> torch.Tensor:
    """The colour of (B, 3, h, w) RGB `x`: `x` less its luma in every channel."""
    return x - luma(x)


def with_chroma(x: torch.Tensor, colour: torch.Tensor) -> torch.Tensor:
    """`x` with its colour replaced by `colour` (a `chroma`), its luma kept."""
    return luma(x) + colour


def _cap_brightening(
    generated: torch.Tensor, fill: torch.Tensor, image: torch.Tensor, cap: float
) -> torch.Tensor:
    """`generated` lowered evenly in R, G and B wherever its luma rises more than `cap` above
    the brighter of `fill` and `image`, so the hue it gives stays."""
    ceiling = torch.maximum(luma(fill), luma(image)) + cap
    return generated - (luma(generated) - ceiling).clamp_min(0.0)


def _down(valid: torch.Tensor) -> torch.Tensor:
    return F.max_pool2d(valid, 2)


def _up(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="nearest")


class LocalRetouchingLayer(nn.Module):
    """Shared encoder + mask prediction branch + local retouching branch."""

    def __init__(self, cfg: ABPNConfig) -> None:
        super().__init__()
        self.cfg = cfg
        widths = [min(cfg.channels * 2**i, cfg.max_channels) for i in range(cfg.depth + 1)]
        # Input: the image and its high-pass (image minus local mean), which makes small spots
        # stand out regardless of skin tone.
        self.stem = ConvAct(6, widths[0])
        self.down = nn.ModuleList(
            nn.Sequential(ConvAct(widths[i], widths[i + 1], stride=2)) for i in range(cfg.depth)
        )
        self.enc = nn.ModuleList(ConvAct(widths[i + 1], widths[i + 1]) for i in range(cfg.depth))
        self.mask_dec = nn.ModuleList(
            ConvAct(widths[i + 1] + widths[i], widths[i]) for i in reversed(range(cfg.depth))
        )
        self.mask_head = nn.Conv2d(widths[0], 1, 1)
        self.attention = LocalAttention(widths[-1])
        # Skip features enter the LRB gated by (1 - mask), plus the mask itself: the mask
        # guides the fusion so corrupted features inside blemishes are not copied through.
        self.ret_dec = nn.ModuleList(
            GatedConv(widths[i + 1] + widths[i] + 1, widths[i]) for i in reversed(range(cfg.depth))
        )
        self.ret_head = nn.Conv2d(widths[0], 3, 3, padding=1)
        nn.init.zeros_(self.ret_head.weight)
        nn.init.zeros_(self.ret_head.bias)
        self.register_buffer("kernel", gaussian_kernel(cfg.prior_sigma), persistent=False)

    def forward(
        self, image: torch.Tensor, valid: torch.Tensor, blobs: torch.Tensor | None = None
    ) -> LRLOutput:
        """Retouch a padded batch `image` (B, 3, h, w) in [0, 1]; `valid` (B, 1, h, w) is 1 on
        real pixels. h and w must be multiples of the config's stride. `blobs` (B, 1, h, w),
        the red-blob prior, is added to the mask logits with weight `cfg.blob_gain`."""
        cfg = self.cfg
        kernel = self.kernel
        coarse = 4
        local_mean = normalized_fill(image, valid, kernel, coarse)
        x = self.stem(torch.cat([image, (image - local_mean) * valid], dim=1)) * valid
        skips, valids = [x], [valid]
        for down, enc in zip(self.down, self.enc, strict=True):
            v = _down(valids[-1])
            x = enc(down(x) * v) * v
            skips.append(x)
            valids.append(v)

        y = x
        for level, block in zip(reversed(range(cfg.depth)), self.mask_dec, strict=True):
            v = valids[level]
            y = block(torch.cat([_up(y), skips[level]], dim=1)) * v
        logits = self.mask_head(y).float()
        evidence = logits if blobs is None else logits + cfg.blob_gain * blobs.float()
        soft = torch.sigmoid(evidence)
        t = cfg.mask_threshold
        mask = F.relu(soft - t) / (1.0 - t)
        if cfg.mask_gamma != 1.0:
            mask = 1.0 - (1.0 - mask) ** cfg.mask_gamma
        mask = mask * valid

        z = self.attention(x, valids[-1])
        for level, block in zip(reversed(range(cfg.depth)), self.ret_dec, strict=True):
            v = valids[level]
            m = F.avg_pool2d(mask, 2**level) if level else mask
            m = m.to(z.dtype)
            z = block(torch.cat([_up(z), skips[level] * (1 - m), m], dim=1)) * v
        correction = self.ret_head(z).float()
        if cfg.correction_chroma != 1.0:
            correction = with_chroma(correction, cfg.correction_chroma * chroma(correction))

        support = valid * (1.0 - mask)
        fill = normalized_fill(image, support, kernel, coarse)
        if cfg.fill_chroma_sigma > 0.0:
            wide = halved_fill(image, support, cfg.fill_chroma_sigma, coarse)
            fill = with_chroma(fill, chroma(wide))
        generated = fill + correction
        photo = image.float()
        if cfg.brighten_cap is not None:
            generated = _cap_brightening(generated, fill, photo, cfg.brighten_cap)
        result = mask * generated + (1.0 - mask) * photo
        return LRLOutput(result=result, mask=mask, mask_logits=logits)
