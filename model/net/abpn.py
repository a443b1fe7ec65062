"""ABPN = LRL + BPL: the whole network, for training and for the inference engine."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from model.net.blend import BlendParams
from model.net.blob_prior import blob_prior
from model.net.bpl import BlendPyramid, Region, Size, pyramid_sizes
from model.net.config import ABPNConfig
from model.net.lrl import LocalRetouchingLayer, LRLOutput

# Config fields the modules are built from (tensor shapes, the fill's kernel buffer).
_BUILT_FROM = frozenset({"channels", "max_channels", "depth", "refine_channels", "prior_sigma"})


@dataclass
class ABPNOutput:
    """Everything a training step may put a loss on."""

    result: torch.Tensor
    """Full-resolution result through the pyramid, clamped to [0, 1] (B, 3, H, W)."""
    result_low: torch.Tensor
    """R_low, the LRL's result at the working size (B, 3, h, w)."""
    image_low: torch.Tensor
    """I_low, the input at the working size (B, 3, h, w)."""
    mask_low: torch.Tensor
    """Effective soft mask at the working size (B, 1, h, w)."""
    mask_logits_low: torch.Tensor
    """Mask logits at the working size, for the mask loss (B, 1, h, w)."""
    mask: torch.Tensor
    """The mask carried up to full resolution (B, 1, H, W)."""


def working_size(size: Size, lrl_size: int) -> Size:
    """The LRL's input size for a photo: long side `lrl_size`, aspect kept, never upscaled."""
    h, w = size
    scale = lrl_size / max(h, w)
    if scale >= 1.0:
        return (h, w)
    return (max(1, round(h * scale)), max(1, round(w * scale)))


def round_up(n: int, stride: int) -> int:
    """The smallest multiple of `stride` that is at least `n`: an LRL canvas side."""
    return -(-n // stride) * stride


def pad_to_canvas(
    images: Sequence[torch.Tensor], stride: int, size: Size | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack (3, h, w) images of different sizes on one zero canvas whose sides are multiples of
    `stride` (`size` when given, which must hold them all); returns the canvas and the
    valid-pixel mask."""
    height = max(img.shape[-2] for img in images)
    width = max(img.shape[-1] for img in images)
    height, width = round_up(height, stride), round_up(width, stride)
    if size is not None:
        if size[0] < height or size[1] < width or size[0] % stride or size[1] % stride:
            raise ValueError(f"canvas {size} cannot hold {height}x{width} at stride {stride}")
        height, width = size
    ref = images[0]
    canvas = ref.new_zeros((len(images), 3, height, width))
    valid = ref.new_zeros((len(images), 1, height, width))
    for i, img in enumerate(images):
        h, w = img.shape[-2:]
        canvas[i, :, :h, :w] = img
        valid[i, :, :h, :w] = 1.0
    return canvas, valid


class ABPN(nn.Module):
    """Adaptive Blend Pyramid Network: the LRL retouches a low-resolution copy, R-ABM turns the
    change into a blend layer, and the pyramid carries it up to be applied by ABM at full size."""

    def __init__(self, cfg: ABPNConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or ABPNConfig()
        self.blend = BlendParams()
        self.lrl = LocalRetouchingLayer(self.cfg)
        self.pyramid = BlendPyramid(self.cfg.refine_channels)

    def set_mask_threshold(self, threshold: float, gamma: float | None = None) -> None:
        """Change the mask threshold and, when given, its curve (`ABPNConfig.mask_gamma`):
        inference-time settings that no weights depend on."""
        gamma = self.cfg.mask_gamma if gamma is None else gamma
        self.set_inference(mask_threshold=threshold, mask_gamma=gamma)

    def set_inference(self, **settings: Any) -> None:
        """Change config fields that no weights depend on (the mask's threshold and curve, the
        red-blob prior, the brightening cap); a field the network is built from is refused."""
        fixed = sorted(set(settings) & _BUILT_FROM)
        if fixed:
            raise ValueError(f"{', '.join(fixed)}: the network is built from these")
        self.cfg = dataclasses.replace(self.cfg, **settings)
        self.lrl.cfg = self.cfg

    def low_res(
        self,
        images: Sequence[torch.Tensor],
        canvas_size: Size | None = None,
        lrl: Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], LRLOutput] | None = None,
        zones: Sequence[torch.Tensor] | None = None,
    ) -> list[LRLOutput]:
        """Run the LRL once over working-size images (3, h, w) of any mix of sizes; each output
        is cropped back to its image's size and is the same as running that image alone.

        `canvas_size` pads to that canvas instead of the smallest one, and `lrl` replaces this
        network's LRL with a compiled copy of it (`model.compiled_lrl`). With a `blob_gain`,
        each image's red-blob prior is measured on that image alone, so batching cannot change
        it, and kept to its face's area and zone, (2, h, w) of 0 or 1, when `zones` gives one
        per image (`model.faces.blob_zone`)."""
        canvas, valid = pad_to_canvas(images, self.cfg.stride, canvas_size)
        blobs = None
        if self.cfg.blob_gain:
            blobs = torch.zeros_like(valid)
            for i, img in enumerate(images):
                h, w = img.shape[-2:]
                blobs[i, :, :h, :w] = blob_prior(img, self.cfg, None if zones is None else zones[i])
        out = (lrl or self.lrl)(canvas, valid, blobs)
        crops = []
        for i, img in enumerate(images):
            h, w = img.shape[-2:]
            crops.append(
                LRLOutput(
                    result=out.result[i : i + 1, :, :h, :w],
                    mask=out.mask[i : i + 1, :, :h, :w],
                    mask_logits=out.mask_logits[i : i + 1, :, :h, :w],
                )
            )
        return crops

    def forward(self, image: torch.Tensor, lrl_size: int | None = None) -> ABPNOutput:
        """Retouch a batch of same-size photos (B, 3, H, W) in [0, 1] end to end, without tiles.

        `lrl_size` overrides the configured working size (training on small crops)."""
        full = (image.shape[-2], image.shape[-1])
        low = working_size(full, lrl_size or self.cfg.lrl_size)
        sizes = pyramid_sizes(low, full)
        levels = {len(sizes) - 1: image}

        def image_at(i: int, region: Region) -> torch.Tensor:
            if i not in levels:
                levels[i] = F.interpolate(image, size=sizes[i], mode="area")
            ys, xs = region.within(Region.whole(sizes[i]))
            return levels[i][:, :, ys, xs]

        image_low = image_at(0, Region.whole(low))
        outs = self.low_res(list(image_low))
        result_low = torch.cat([o.result for o in outs])
        mask_low = torch.cat([o.mask for o in outs])
        offset_low = self.blend.rabm(image_low, result_low)
        offset, mask = self.pyramid(offset_low, mask_low, sizes, image_at)
        return ABPNOutput(
            result=self.blend.abm(image, offset).clamp(0.0, 1.0),
            result_low=result_low,
            image_low=image_low,
            mask_low=mask_low,
            mask_logits_low=torch.cat([o.mask_logits for o in outs]),
            mask=mask,
        )
