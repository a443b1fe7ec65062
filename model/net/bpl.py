"""BPL, the adaptive blend pyramid layer: carries the low-resolution blend layer up to the
photo's own size, refining it at every level, and runs the large levels in tiles.

Resampling uses the library's bilinear kernels (the half-pixel convention of
`align_corners=False`) on crops: an exact x2 step runs `F.interpolate` on the smallest crop
whose edge clamping cannot reach the wanted pixels, and any other ratio one `F.grid_sample`
pass at the exact source coordinates of the wanted box. Either way a crop of a level resizes to
the same pixels as the whole level would. That is what makes tiling exact: each tile is grown
by the refining module's receptive field at every level, computed, and cropped back.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

Size = tuple[int, int]


@dataclass(frozen=True)
class Region:
    """Half-open pixel box [y0, y1) x [x0, x1) within one pyramid level."""

    y0: int
    y1: int
    x0: int
    x1: int

    @classmethod
    def whole(cls, size: Size) -> Region:
        """The box covering a level of this (height, width)."""
        return cls(0, size[0], 0, size[1])

    def grow(self, margin: int, size: Size) -> Region:
        """The box grown by `margin` on every side, clipped to the level."""
        return Region(
            max(0, self.y0 - margin),
            min(size[0], self.y1 + margin),
            max(0, self.x0 - margin),
            min(size[1], self.x1 + margin),
        )

    def within(self, outer: Region) -> tuple[slice, slice]:
        """Slices selecting this box out of a tensor that covers `outer`."""
        return (
            slice(self.y0 - outer.y0, self.y1 - outer.y0),
            slice(self.x0 - outer.x0, self.x1 - outer.x0),
        )


def _axis_taps(
    out0: int, out1: int, src: int, dst: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Source indices and weights for output pixels [out0, out1) of a src -> dst resize."""
    o = torch.arange(out0, out1, dtype=torch.float64)
    s = ((o + 0.5) * (src / dst) - 0.5).clamp(min=0.0)
    i0 = s.floor().long().clamp(max=src - 1)
    i1 = (i0 + 1).clamp(max=src - 1)
    w = (s - i0.double()).clamp(max=1.0).float()
    return i0, i1, w


def source_span(region: Region, src: Size, dst: Size) -> Region:
    """The box of the source level that `resize_region` reads to produce `region` of dst."""
    y0, _, _ = _axis_taps(region.y0, region.y0 + 1, src[0], dst[0])
    _, y1, _ = _axis_taps(region.y1 - 1, region.y1, src[0], dst[0])
    x0, _, _ = _axis_taps(region.x0, region.x0 + 1, src[1], dst[1])
    _, x1, _ = _axis_taps(region.x1 - 1, region.x1, src[1], dst[1])
    return Region(int(y0), int(y1) + 1, int(x0), int(x1) + 1)


def resize_region(
    x: torch.Tensor, covers: Region, src: Size, dst: Size, region: Region
) -> torch.Tensor:
    """Bilinearly resize the level `x` (B, C, ...) covering box `covers` of a src-sized level,
    returning box `region` of the dst-sized result."""
    if src == dst:
        ys, xs = region.within(covers)
        return x[:, :, ys, xs]
    if dst == (2 * src[0], 2 * src[1]):
        return _double_region(x, covers, src, region)
    return _sample_region(x, covers, src, dst, region)


def _double_region(x: torch.Tensor, covers: Region, src: Size, region: Region) -> torch.Tensor:
    """`resize_region` for an exact x2 step: every output pixel has the same two taps at the
    same weights, so the library kernel run on a crop gives the whole level's pixels wherever
    the crop's own edge clamping does not reach. The crop [a0, a1) is the smallest for which
    that holds over `region`: its first output row is off unless a0 is the level's edge, and so
    is its last unless a1 is."""
    y0, y1 = max(0, (region.y0 - 1) // 2), min(src[0], (region.y1 + 2) // 2)
    x0, x1 = max(0, (region.x0 - 1) // 2), min(src[1], (region.x1 + 2) // 2)
    crop = x[:, :, y0 - covers.y0 : y1 - covers.y0, x0 - covers.x0 : x1 - covers.x0]
    up = F.interpolate(crop, scale_factor=2.0, mode="bilinear", align_corners=False)
    ys, xs = region.within(Region(2 * y0, 2 * y1, 2 * x0, 2 * x1))
    return up[:, :, ys, xs]


def _sample_coords(out0: int, out1: int, src: int, dst: int, first: int, n: int) -> torch.Tensor:
    """Normalised grid_sample coordinates (align_corners=False) of output pixels [out0, out1)
    of a src -> dst resize, in a source crop of `n` pixels starting at `first`."""
    o = torch.arange(out0, out1, dtype=torch.float64)
    s = ((o + 0.5) * (src / dst) - 0.5).clamp(min=0.0, max=src - 1) - first
    return ((2.0 * s + 1.0) / n - 1.0).float()


def _sample_region(
    x: torch.Tensor, covers: Region, src: Size, dst: Size, region: Region
) -> torch.Tensor:
    """`resize_region` for any ratio: one bilinear sampling pass at the exact source
    coordinates of `region` (the two-tap lerp of `_axis_taps`, clamped at the level's edges)."""
    gy = _sample_coords(region.y0, region.y1, src[0], dst[0], covers.y0, x.shape[2])
    gx = _sample_coords(region.x0, region.x1, src[1], dst[1], covers.x0, x.shape[3])
    grid = torch.stack(torch.broadcast_tensors(gx.view(1, -1), gy.view(-1, 1)), dim=-1)
    grid = grid.to(x.device, x.dtype).unsqueeze(0).expand(x.shape[0], -1, -1, -1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def pyramid_sizes(low: Size, full: Size) -> list[Size]:
    """Level sizes from the LRL's working size up to the photo's: x2 per level, the last step
    to the exact photo size (odd sizes and non-power-of-two ratios included)."""
    sizes = [low]
    h, w = low
    while 2 * max(h, w) < max(full):
        h, w = 2 * h, 2 * w
        sizes.append((h, w))
    if sizes[-1] != full:
        sizes.append(full)
    return sizes


class Refiner(nn.Module):
    """The light refining module run at every level: two 3x3 convs over the upsampled blend
    offset, the level's image and the mask, adding a correction only where the mask is set."""

    RADIUS = 2
    """Receptive-field radius in pixels: how far a tile must grow to stay exact."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(7, hidden, 3, padding=1)
        self.conv2 = nn.Conv2d(hidden, 3, 3, padding=1)
        # Zero-initialised output: an untrained refiner passes the blend layer through.
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(
        self, offset: torch.Tensor, mask: torch.Tensor, image: torch.Tensor
    ) -> torch.Tensor:
        """Refined blend offset; equal to `offset` wherever `mask` is 0."""
        weight = self.conv1.weight
        # The convolutions run in the weights' dtype and layout: the engine may hold a
        # bfloat16 channels-last copy (its CPU fast path), training holds float32 NCHW.
        layout = (
            torch.channels_last
            if weight.is_contiguous(memory_format=torch.channels_last)
            else torch.contiguous_format
        )
        x = torch.cat([offset, image - 0.5, mask], dim=1).to(weight.dtype, memory_format=layout)
        delta = self.conv2(F.leaky_relu(self.conv1(x), 0.2))
        return offset + mask * delta.float()


ImageAt = Callable[[int, Region], torch.Tensor]
"""Returns the photo at pyramid level `i` over a region, float in [0, 1], (B, 3, h, w)."""


class BlendPyramid(nn.Module):
    """Upsamples a blend offset and its mask level by level, refining at each level."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.refiner = Refiner(hidden)

    def step(
        self,
        offset: torch.Tensor,
        mask: torch.Tensor,
        covers: Region,
        src: Size,
        dst: Size,
        region: Region,
        image: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One level: resize (offset, mask) covering `covers` of the src level to `region` of
        the dst level and refine against `image` (the dst-level photo over `region`)."""
        up_offset = resize_region(offset, covers, src, dst, region)
        up_mask = resize_region(mask, covers, src, dst, region)
        return self.refiner(up_offset, up_mask, image), up_mask

    def forward(
        self, offset: torch.Tensor, mask: torch.Tensor, sizes: list[Size], image_at: ImageAt
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run every level on whole tensors (training, and photos small enough to need no
        tiles). Returns the top-level offset and mask."""
        for i in range(1, len(sizes)):
            whole = Region.whole(sizes[i])
            offset, mask = self.step(
                offset,
                mask,
                Region.whole(sizes[i - 1]),
                sizes[i - 1],
                sizes[i],
                whole,
                image_at(i, whole),
            )
        return offset, mask

    def render_region(
        self,
        base_offset: torch.Tensor,
        base_mask: torch.Tensor,
        base: int,
        sizes: list[Size],
        region: Region,
        image_at: ImageAt,
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Compute `region` of the top level from the whole level `base`, growing the box by the
        refiner's reach at every level above `base`. Returns None when the mask is zero over
        everything the region depends on: the blend layer is neutral there by construction."""
        top = len(sizes) - 1
        needed: dict[int, Region] = {top: region}
        for i in range(top, base, -1):
            grown = needed[i].grow(Refiner.RADIUS, sizes[i])
            needed[i - 1] = source_span(grown, sizes[i - 1], sizes[i])
        ys, xs = needed[base].within(Region.whole(sizes[base]))
        if not bool(base_mask[:, :, ys, xs].any()):
            return None
        offset, mask = base_offset[:, :, ys, xs], base_mask[:, :, ys, xs]
        for i in range(base + 1, top + 1):
            grown = needed[i].grow(Refiner.RADIUS, sizes[i])
            offset, mask = self.step(
                offset, mask, needed[i - 1], sizes[i - 1], sizes[i], grown, image_at(i, grown)
            )
            inner = needed[i].within(grown)
            offset, mask = offset[:, :, inner[0], inner[1]], mask[:, :, inner[0], inner[1]]
        return offset, mask


def tiles(size: Size, tile: int) -> Iterator[Region]:
    """Split a level into tiles of at most tile x tile pixels, row by row."""
    rows = math.ceil(size[0] / tile)
    cols = math.ceil(size[1] / tile)
    for r in range(rows):
        for c in range(cols):
            yield Region(
                r * tile, min(size[0], (r + 1) * tile), c * tile, min(size[1], (c + 1) * tile)
            )
