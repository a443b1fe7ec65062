"""Training batches and the fixed evaluation set: (input, target, mask) triples.

Every sample is made the same way:

1. pick a clean source: a crop of one side of a shipped portrait (see
   ``training.data.sources``) or a fresh procedural skin texture;
2. jitter its colour: exposure, gamma, white balance, saturation and, half of the time, a shift
   of the skin tone towards a random tone from light to dark;
3. paint blemishes with ``training.data.blemishes.paint_blemishes``;
4. resize to the requested size (portrait crops are painted at the photo's own resolution and
   then resampled together with the clean crop, so defects are exactly as sharp as the skin
   under them whether the crop was shrunk or enlarged);
5. round the clean image to uint8 for the target and add the *rounded change* to it for the
   input, then flip.

The mask is exactly where input and target differ (uint8). Rounding the change rather than the
painted image keeps the mask's outline clean: a pixel is marked only when a defect moved it by at
least ``MIN_LEVELS`` grey levels, never because rounding happened to fall the other way.

Train and eval never meet: portrait crops come from disjoint regions (``portrait_regions``), and
textures from independent random streams (training and evaluation generators are seeded from
different ``SeedSequence`` entropy, tagged by :data:`_TRAIN_STREAM` and :data:`_EVAL_STREAM`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import IterableDataset, get_worker_info

from .blemishes import MIN_LEVELS, change_weight, channel_max, paint_blemishes, quantise
from .sources import Region, Split, portrait_regions, sample_skin_tone, skin_texture

# Arbitrary constants mixed into the seeds, so a training run seeded with 1234 still draws
# different textures from the evaluation set made with seed 1234.
_TRAIN_STREAM = 0x7A11
_EVAL_STREAM = 0xE7A1

#: Portrait crops are resampled by at most these factors (below: softened; above: blurred).
ZOOM_RANGE = (0.5, 1.6)


@dataclass(frozen=True)
class Sample:
    """One synthetic pair, as uint8 images."""

    input: np.ndarray  # uint8 HxWx3: the clean image with painted defects
    target: np.ndarray  # uint8 HxWx3: the clean image
    mask: np.ndarray  # bool HxW: exactly where input != target (any channel)
    weight: np.ndarray  # float32 HxW in [0, 1]: how strongly each pixel changed (0 off-mask)
    source: str  # "astronaut", "grace_hopper" or "texture"
    scale: float  # defect scale in this sample's pixels (1.0: a face about 250 px wide)
    box: tuple[int, int, int, int] | None  # portrait pixels cut out (x0, y0, x1, y1); None: texture


class Batch(NamedTuple):
    """A training batch of float tensors in [0, 1]."""

    input: torch.Tensor  # [B, 3, H, W]
    target: torch.Tensor  # [B, 3, H, W]
    mask: torch.Tensor  # [B, 1, H, W], 0 or 1
    weight: torch.Tensor  # [B, 1, H, W], soft importance from ``Sample.weight``


@functools.cache
def _skin_centres(split: Split) -> tuple[np.ndarray, ...]:
    return tuple(np.flatnonzero(r.skin >= 0.75) for r in portrait_regions(split))


@functools.cache
def _mean_skin(split: Split) -> tuple[np.ndarray, ...]:
    out = []
    for r in portrait_regions(split):
        core = r.skin >= 0.75
        out.append(r.image[core].astype(np.float32).mean(axis=0) / 255.0)
    return tuple(out)


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _jitter_saturation(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    grey = img @ np.float32([0.299, 0.587, 0.114])
    sat = np.float32(rng.uniform(0.8, 1.2))
    out = grey[..., None] + sat * (img - grey[..., None])
    # Back onto the 1/255 grid: the synthesiser's exact-mask guarantee assumes uint8 values.
    return np.clip(np.rint(out * 255.0), 0, 255).astype(np.float32) / 255.0


def _colour_jitter_uint8(
    img: np.ndarray, rng: np.random.Generator, mean_skin: np.ndarray
) -> np.ndarray:
    """Exposure, gamma, white balance and skin-tone shift (one LUT per channel), then saturation."""
    gain = 2.0 ** rng.uniform(-0.35, 0.35) * (1.0 + rng.normal(0.0, 0.03, 3))
    if rng.random() < 0.5:
        # Move this person's mean skin colour part of the way to a random tone.
        ratio = sample_skin_tone(rng) / np.maximum(mean_skin, 0.05)
        gain = gain * ratio ** rng.uniform(0.3, 1.0)
    gamma = rng.uniform(0.85, 1.15)
    x = np.arange(256, dtype=np.float64) / 255.0
    lut = np.rint(np.clip(gain[:, None] * x[None, :] ** gamma, 0.0, 1.0) * 255.0).astype(np.uint8)
    jittered = lut[np.arange(3), img]
    return _jitter_saturation(jittered.astype(np.float32) / 255.0, rng)


def _resize_pair(
    clean: np.ndarray, painted: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Resample both float HxWx3 images to size x size with the same antialiased filter."""
    if clean.shape[0] == size and clean.shape[1] == size:
        return clean, painted
    both = torch.from_numpy(np.concatenate([clean, painted], axis=-1)).permute(2, 0, 1)[None]
    out = F.interpolate(
        both, size=(size, size), mode="bilinear", antialias=True, align_corners=False
    )
    out = out[0].permute(1, 2, 0).numpy()
    return out[..., :3], out[..., 3:]


def _finish(
    clean: np.ndarray,
    painted: np.ndarray,
    rng: np.random.Generator,
    *,
    any_flip: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    target = quantise(clean)
    delta = np.rint((painted - clean) * 255.0).astype(np.int16)
    # Resampling spreads each defect's cut-off edge into faint tails again; drop them as the
    # synthesiser does, so a masked pixel always differs by a visible amount.
    delta *= (channel_max(np.abs(delta)) >= MIN_LEVELS)[..., None]
    inp = np.clip(target.astype(np.int16) + delta, 0, 255).astype(np.uint8)
    mask = channel_max(inp != target)
    weight = change_weight(target.astype(np.float32) / 255.0, inp.astype(np.float32) / 255.0)
    arrays = [inp, target, mask, weight]
    # Faces are only mirrored left-right; textures have no up or down.
    if rng.random() < 0.5:
        arrays = [a[:, ::-1] for a in arrays]
    if any_flip:
        if rng.random() < 0.5:
            arrays = [a[::-1] for a in arrays]
        if rng.random() < 0.5:
            arrays = [a.swapaxes(0, 1) for a in arrays]
    inp, target, mask, weight = (np.ascontiguousarray(a) for a in arrays)
    return inp, target, mask, weight


def _portrait_sample(
    rng: np.random.Generator,
    size: int,
    split: Split,
    scale_range: tuple[float, float],
    density: float,
    region_index: int | None,
) -> Sample:
    regions = portrait_regions(split)
    if region_index is None:
        # Proportional to skin area, so every skin pixel is about equally likely to be seen.
        areas = np.array([len(c) for c in _skin_centres(split)], np.float64)
        region_index = int(rng.choice(len(regions), p=areas / areas.sum()))
    region: Region = regions[region_index]
    h, w = region.skin.shape

    wanted = _log_uniform(rng, *scale_range)
    zoom = float(np.clip(wanted / region.defect_scale, *ZOOM_RANGE))
    side = min(round(size / zoom), h, w)
    # Centre the window loosely on a random skin pixel, so crops show skin in varied positions.
    centres = _skin_centres(split)[region_index]
    ay, ax = divmod(int(centres[rng.integers(centres.size)]), w)
    y0 = int(np.clip(ay - rng.uniform(0.2, 0.8) * side, 0, h - side))
    x0 = int(np.clip(ax - rng.uniform(0.2, 0.8) * side, 0, w - side))
    window = region.image[y0 : y0 + side, x0 : x0 + side]
    skin = region.skin[y0 : y0 + side, x0 : x0 + side]

    clean = _colour_jitter_uint8(window, rng, _mean_skin(split)[region_index])
    if density > 0:
        painted, _ = paint_blemishes(clean, skin, rng, scale=region.defect_scale, density=density)
    else:
        painted = clean
    clean, painted = _resize_pair(clean, painted, size)
    inp, target, mask, weight = _finish(clean, painted, rng, any_flip=False)
    box = (region.x_offset + x0, y0, region.x_offset + x0 + side, y0 + side)
    return Sample(inp, target, mask, weight, region.name, region.defect_scale * size / side, box)


def _texture_sample(
    rng: np.random.Generator,
    size: int,
    scale_range: tuple[float, float],
    density: float,
) -> Sample:
    scale = _log_uniform(rng, *scale_range)
    tex = skin_texture(size, size, rng, scale=scale)
    tex *= np.float32(2.0 ** rng.uniform(-0.25, 0.25))
    clean = _jitter_saturation(np.clip(tex, 0.0, 1.0), rng)
    if density > 0:
        skin = np.ones((size, size), np.float32)
        painted, _ = paint_blemishes(clean, skin, rng, scale=scale, density=density)
    else:
        painted = clean
    inp, target, mask, weight = _finish(clean, painted, rng, any_flip=True)
    return Sample(inp, target, mask, weight, "texture", scale, None)


def draw_sample(
    rng: np.random.Generator,
    size: int,
    *,
    split: Split = "train",
    p_real: float = 0.5,
    scale_range: tuple[float, float] = (0.4, 1.6),
    density_range: tuple[float, float] = (0.4, 1.6),
    p_clean: float = 0.05,
) -> Sample:
    """Draw one ``size x size`` sample from ``split`` (see the module docstring for the steps).

    ``p_real``: chance of a portrait crop rather than a texture. ``scale_range``: defect scale,
    log-uniform (portrait crops reach it by resampling within :data:`ZOOM_RANGE`, so a portrait's
    own face size limits what it can give). ``density_range``: log-uniform density for
    ``paint_blemishes``. ``p_clean``: chance of no defects at all (input equals target), so a
    model also learns to leave clean skin alone.
    """
    density = 0.0 if rng.random() < p_clean else _log_uniform(rng, *density_range)
    if rng.random() < p_real:
        return _portrait_sample(rng, size, split, scale_range, density, None)
    return _texture_sample(rng, size, scale_range, density)


def collate(samples: list[Sample]) -> Batch:
    """Stack samples into float tensors in [0, 1] (channels first)."""

    def images(key: str) -> torch.Tensor:
        arr = np.stack([getattr(s, key) for s in samples])
        return torch.from_numpy(arr).permute(0, 3, 1, 2).float().div_(255.0).contiguous()

    mask = torch.from_numpy(np.stack([s.mask for s in samples])[:, None]).float()
    weight = torch.from_numpy(np.stack([s.weight for s in samples])[:, None])
    return Batch(images("input"), images("target"), mask, weight)


class TrainSampler:
    """Endless, seeded stream of training samples and batches from the training regions.

    ``TrainSampler(seed)`` always produces the same sequence. Iterating yields :class:`Batch`
    objects of ``batch_size`` forever; :meth:`sample` gives single uint8 samples. Remaining
    keyword arguments go to :func:`draw_sample`.
    """

    def __init__(
        self,
        seed: int = 0,
        crop_size: int = 128,
        batch_size: int = 8,
        *,
        p_real: float = 0.5,
        scale_range: tuple[float, float] = (0.4, 1.6),
        density_range: tuple[float, float] = (0.4, 1.6),
        p_clean: float = 0.05,
    ) -> None:
        self.crop_size = int(crop_size)
        self.batch_size = int(batch_size)
        self.options = {
            "p_real": p_real,
            "scale_range": scale_range,
            "density_range": density_range,
            "p_clean": p_clean,
        }
        self.rng = np.random.default_rng([int(seed), _TRAIN_STREAM])

    def sample(self) -> Sample:
        """The next training sample (uint8 images)."""
        return draw_sample(self.rng, self.crop_size, split="train", **self.options)

    def batch(self, batch_size: int | None = None) -> Batch:
        """The next batch of ``batch_size`` (default: the sampler's) samples as tensors."""
        return collate([self.sample() for _ in range(batch_size or self.batch_size)])

    def __iter__(self) -> Iterator[Batch]:
        while True:
            yield self.batch()


class BlemishBatches(IterableDataset):
    """``TrainSampler`` as a torch ``IterableDataset`` for ``DataLoader(..., batch_size=None)``.

    Each DataLoader worker gets its own sampler seeded with ``(seed, worker id)``, so workers
    never repeat each other's samples.
    """

    def __init__(
        self, seed: int = 0, crop_size: int = 128, batch_size: int = 8, **options: Any
    ) -> None:
        super().__init__()
        self.seed, self.crop_size, self.batch_size, self.options = (
            seed,
            crop_size,
            batch_size,
            options,
        )

    def __iter__(self) -> Iterator[Batch]:
        info = get_worker_info()
        seed = self.seed if info is None else self.seed * 1000 + info.id + 1
        return iter(TrainSampler(seed, self.crop_size, self.batch_size, **self.options))


def make_eval_set(
    n: int = 48,
    size: int = 256,
    seed: int = 1234,
    *,
    scale_range: tuple[float, float] = (0.5, 1.5),
    density_range: tuple[float, float] = (0.6, 1.3),
) -> list[Sample]:
    """A fixed held-out evaluation set: the same ``n`` samples on every run and machine.

    Even indices are crops of the portraits' evaluation regions (alternating between portraits),
    odd indices are procedural textures; every sample has at least one defect. Sample ``i``
    depends only on ``(seed, i)``, so a longer set begins with the shorter one.
    """
    n_regions = len(portrait_regions("eval"))
    out = []
    for i in range(n):
        rng = np.random.default_rng([int(seed), i, _EVAL_STREAM])
        density = _log_uniform(rng, *density_range)
        if i % 2 == 0:
            idx = (i // 2) % n_regions
            out.append(_portrait_sample(rng, size, "eval", scale_range, density, idx))
        else:
            out.append(_texture_sample(rng, size, scale_range, density))
    return out
