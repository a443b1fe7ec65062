"""Inference engine: uint8 photos of any sizes in, retouched uint8 photos of the same sizes out.

Per batch: every photo is resized to the LRL's working size (Pillow, on uint8: fast and light
at 8K), the LRL runs once over the whole batch, and each photo's blend pyramid then runs on its
own, its large levels in tiles. A tile whose mask is zero everywhere it depends on is neutral by
construction and copied through untouched, which is where most of an 8K portrait goes.
"""

from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from model.abpn import ABPN, working_size
from model.bpl import Region, Size, pyramid_sizes, tiles

MAX_STRENGTH = 1.5
MIN_TILE = 64


@dataclass
class RetouchResult:
    """One retouched photo."""

    image: np.ndarray
    """(H, W, 3) uint8, the input's size."""
    mask: np.ndarray | None
    """(H, W) uint8 mask of what was retouched (0-255), when asked for."""
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds spent: "prepare" (resizing), "lrl" (this photo's share of the batch), "pyramid"."""


def validate_image(image: np.ndarray) -> None:
    """Raise ValueError unless `image` is a non-empty (H, W, 3) uint8 array."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"expected a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ValueError(f"expected uint8 pixels, got {image.dtype}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB array, got shape {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"empty image of shape {image.shape}")


def _resize_u8(image: np.ndarray, size: Size) -> np.ndarray:
    if image.shape[:2] == size:
        return image
    # Box filter = area averaging, the same downsampling the network was trained with.
    return np.asarray(Image.fromarray(image).resize((size[1], size[0]), Image.Resampling.BOX))


class RetouchEngine:
    """Owns one model replica on one device and retouches batches of photos with it."""

    def __init__(
        self,
        model: ABPN,
        device: str | torch.device = "cpu",
        half: bool | None = None,
        tile_size: int | None = None,
        lrl_chunk: int | None = None,
    ) -> None:
        self.device = torch.device(device)
        cuda = self.device.type == "cuda"
        self.half = cuda if half is None else half
        if self.half and not cuda:
            raise ValueError("half precision is only supported on CUDA devices")
        self.model = copy.deepcopy(model).eval().to(self.device)
        if cuda:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.cfg = self.model.cfg
        # GPUs have the memory to run 8K whole; tiles there only add launch overhead.
        self.tile_size = tile_size or (4096 if cuda else self.cfg.tile_size)
        # How many photos one LRL call takes. A GPU wants the whole batch; on the CPU a batch
        # of 8 ran ~1.6x slower per photo than one at a time (memory-bound convolutions, see
        # docs/benchmarks.md), and results do not depend on the grouping.
        self.lrl_chunk = lrl_chunk or (1 << 30 if cuda else 1)

    def _to_device(self, array: np.ndarray) -> torch.Tensor:
        """(H, W, C) uint8 -> (1, C, H, W) uint8 on the device, through pinned memory on CUDA."""
        with warnings.catch_warnings():
            # Read-only inputs (e.g. from Pillow) are fine: tensors made here are never written.
            warnings.simplefilter("ignore", UserWarning)
            t = torch.from_numpy(np.ascontiguousarray(array))
        if self.device.type == "cuda":
            t = t.pin_memory().to(self.device, non_blocking=True)
        return t.permute(2, 0, 1).unsqueeze(0)

    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=torch.float16, enabled=self.half)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def warmup(self) -> None:
        """Run one small batch so the first real request does not pay for lazy initialisation."""
        rng = np.random.default_rng(0)
        image = rng.integers(0, 256, size=(96, 128, 3), dtype=np.uint8)
        self.retouch_batch([image, image[:64]], 1.0, return_mask=True)

    def retouch(
        self, image: np.ndarray, strength: float = 1.0, return_mask: bool = False
    ) -> RetouchResult:
        """Retouch one photo; see `retouch_batch`."""
        return self.retouch_batch([image], strength, return_mask)[0]

    def retouch_batch(
        self,
        images: Sequence[np.ndarray],
        strengths: Sequence[float] | float = 1.0,
        return_mask: bool = False,
    ) -> list[RetouchResult]:
        """Retouch (H, W, 3) uint8 photos of any sizes. `strength` 0 returns the input
        bit-exactly, 1 the model's result; values between interpolate and up to 1.5 extrapolate,
        all in blend space. Blocking: call it from a worker thread, not an event loop."""
        if isinstance(strengths, (int, float)):
            strengths = [float(strengths)] * len(images)
        if len(strengths) != len(images):
            raise ValueError("one strength per image is required")
        for image in images:
            validate_image(image)
        for s in strengths:
            if not 0.0 <= s <= MAX_STRENGTH:
                raise ValueError(f"strength must be within 0 and {MAX_STRENGTH}, got {s}")
        if not images:
            return []
        with torch.inference_mode():
            return self._retouch(images, list(strengths), return_mask)

    def _retouch(
        self, images: Sequence[np.ndarray], strengths: list[float], return_mask: bool
    ) -> list[RetouchResult]:
        t0 = time.perf_counter()
        plans = []
        for image in images:
            full = image.shape[:2]
            sizes = pyramid_sizes(working_size(full, self.cfg.lrl_size), full)
            levels = [image]
            for size in reversed(sizes[:-1]):
                # Each level from the one above: the same box average, a fraction of the cost.
                levels.append(_resize_u8(levels[-1], size))
            plans.append((sizes, levels[:0:-1]))
        lows = [
            self._to_device(levels[0] if levels else image)
            for image, (_, levels) in zip(images, plans, strict=True)
        ]
        t1 = time.perf_counter()
        with self._autocast():
            low_inputs = [low[0].float() / 255.0 for low in lows]
            outputs = []
            for start in range(0, len(low_inputs), self.lrl_chunk):
                outputs += self.model.low_res(low_inputs[start : start + self.lrl_chunk])
        self._sync()
        t2 = time.perf_counter()
        prepare_share = (t1 - t0) / len(images)
        lrl_share = (t2 - t1) / len(images)

        results = []
        for image, (sizes, levels), low, out, strength in zip(
            images, plans, low_inputs, outputs, strengths, strict=True
        ):
            t3 = time.perf_counter()
            job = _PyramidJob(
                image=image,
                sizes=sizes,
                levels=levels,
                offset=self.model.blend.rabm(low.unsqueeze(0), out.result),
                mask=out.mask,
                strength=strength,
                return_mask=return_mask,
            )
            rendered, mask = self._render(job)
            results.append(
                RetouchResult(
                    image=rendered,
                    mask=mask,
                    timings={
                        "prepare": prepare_share,
                        "lrl": lrl_share,
                        "pyramid": time.perf_counter() - t3,
                    },
                )
            )
        return results

    def _render(self, job: _PyramidJob) -> tuple[np.ndarray, np.ndarray | None]:
        """Carry one photo's low-res blend offset up to full size and apply it, halving the tile
        whenever the device runs out of memory."""
        if job.strength == 0.0 and not job.return_mask:
            return job.image.copy(), None
        tile = self.tile_size
        while True:
            try:
                return self._render_tiled(job, tile)
            except torch.OutOfMemoryError:
                if tile // 2 < MIN_TILE:
                    raise
                tile //= 2
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()

    def _render_tiled(self, job: _PyramidJob, tile: int) -> tuple[np.ndarray, np.ndarray | None]:
        sizes = job.sizes
        top = len(sizes) - 1
        # Levels small enough to run whole do so once; the rest run per tile of the top level.
        base = max(i for i, (h, w) in enumerate(sizes) if i == 0 or h * w <= tile * tile)
        photo = self._to_device(job.image)
        device_levels = [self._to_device(level) for level in job.levels] + [photo]

        def image_at(i: int, region: Region) -> torch.Tensor:
            crop = device_levels[i][:, :, region.y0 : region.y1, region.x0 : region.x1]
            return crop.float() / 255.0

        pyramid = self.model.pyramid
        with self._autocast():
            offset, mask = pyramid(job.offset, job.mask, sizes[: base + 1], image_at)
        out = photo.clone()
        out_mask = photo.new_zeros((1, 1, *sizes[top])) if job.return_mask else None
        for region in tiles(sizes[top], tile) if base < top else [Region.whole(sizes[top])]:
            with self._autocast():
                rendered = pyramid.render_region(offset, mask, base, sizes, region, image_at)
            if rendered is None:
                continue
            tile_offset, tile_mask = rendered
            ys, xs = slice(region.y0, region.y1), slice(region.x0, region.x1)
            if job.strength > 0.0:
                result = self.model.blend.abm(image_at(top, region), tile_offset * job.strength)
                out[:, :, ys, xs] = _to_u8(result)
            if out_mask is not None:
                out_mask[:, :, ys, xs] = _to_u8(tile_mask)
        rendered_image = out[0].permute(1, 2, 0).cpu().numpy()
        rendered_mask = out_mask[0, 0].cpu().numpy() if out_mask is not None else None
        return rendered_image, rendered_mask


@dataclass
class _PyramidJob:
    """One photo's work after the LRL: its levels and low-resolution blend offset and mask."""

    image: np.ndarray
    sizes: list[Size]
    levels: list[np.ndarray]
    offset: torch.Tensor
    mask: torch.Tensor
    strength: float
    return_mask: bool


def _to_u8(x: torch.Tensor) -> torch.Tensor:
    return (x * 255.0).round_().clamp_(0, 255).to(torch.uint8)
