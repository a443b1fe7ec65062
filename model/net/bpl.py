"""BPL, the adaptive blend pyramid layer: carries the low-resolution blend layer up to the
photo's own size, refining it at every level, and runs the large levels in tiles.

Resampling uses the library's bilinear kernels (the half-pixel convention of
`align_corners=False`) on crops: an exact x2 step runs `F.interpolate` on the smallest crop
whose edge clamping cannot reach the wanted pixels, and any other ratio one `F.grid_sample`
pass at the exact source coordinates of the wanted box. Either way a crop of a level resizes to
the same pixels as the whole level would. That is what makes tiling exact: each tile is grown
by the refining module's receptive field at every level, computed, and cropped back. Within a
tile only the box that the mask's non-zero pixels can reach is computed; the rest is exactly
zero.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
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

    def intersect(self, other: Region) -> Region | None:
        """The box both boxes cover, or None when they do not overlap."""
        box = Region(
            max(self.y0, other.y0),
            min(self.y1, other.y1),
            max(self.x0, other.x0),
            min(self.x1, other.x1),
        )
        return box if box.y0 < box.y1 and box.x0 < box.x1 else None

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


@functools.cache
def _axis_reads(src: int, dst: int) -> tuple[np.ndarray, np.ndarray]:
    """First and second source tap of every output pixel of a src -> dst resize (both
    non-decreasing along the axis)."""
    i0, i1, _ = _axis_taps(0, dst, src, dst)
    return i0.numpy(), i1.numpy()


def _axis_reach(a: int, b: int, src: int, dst: int) -> tuple[int, int]:
    i0, i1 = _axis_reads(src, dst)
    return int(np.searchsorted(i1, a, "left")), int(np.searchsorted(i0, b - 1, "right"))


def reach(region: Region, src: Size, dst: Size) -> Region | None:
    """The box of the dst level whose bilinear taps read any pixel of `region` of src: a level
    that is zero outside `region` resizes to one that is exactly zero outside this box."""
    if src == dst:
        return region
    y0, y1 = _axis_reach(region.y0, region.y1, src[0], dst[0])
    x0, x1 = _axis_reach(region.x0, region.x1, src[1], dst[1])
    return Region(y0, y1, x0, x1) if y0 < y1 and x0 < x1 else None


def support(x: torch.Tensor, covers: Region) -> Region | None:
    """The smallest box holding every non-zero pixel of `x` (B, C, h, w), which covers box
    `covers` of its level, in that level's coordinates; None when `x` is zero everywhere."""
    nonzero = x.ne(0).flatten(0, 1).any(0)
    rows = torch.nonzero(nonzero.any(1)).flatten()
    if rows.numel() == 0:
        return None
    cols = torch.nonzero(nonzero.any(0)).flatten()
    return Region(
        covers.y0 + int(rows[0]),
        covers.y0 + int(rows[-1]) + 1,
        covers.x0 + int(cols[0]),
        covers.x0 + int(cols[-1]) + 1,
    )


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
    ) -> tuple[Region, torch.Tensor, torch.Tensor] | None:
        """Compute the part of `region` of the top level that the mask reaches, from the whole
        level `base`. Returns that box with the offset and mask over it; everywhere else in
        `region` both are exactly zero (the blend layer is neutral there by construction), and
        None when that is all of it. The box's work grows by the refiner's reach at every level
        above `base`, so it gives the same pixels as the whole level would."""
        top = len(sizes) - 1
        needed = _dependencies(region, base, sizes)
        ys, xs = needed[base].within(Region.whole(sizes[base]))
        box = support(base_mask[:, :, ys, xs], needed[base])
        # The offset is zero wherever the mask is (R = I there), and a refined level is
        # non-zero only where its upsampled mask or offset is: the mask's support, carried up
        # level by level, bounds everything that can change. A tile often holds one small
        # spot, and this box is all of it the pyramid then has to compute.
        for i in range(base + 1, top + 1):
            if box is None:
                return None
            box = reach(box, sizes[i - 1], sizes[i])
        box = box.intersect(region) if box is not None else None
        if box is None:
            return None
        needed = _dependencies(box, base, sizes)
        ys, xs = needed[base].within(Region.whole(sizes[base]))
        offset, mask = base_offset[:, :, ys, xs], base_mask[:, :, ys, xs]
        for i in range(base + 1, top + 1):
            grown = needed[i].grow(Refiner.RADIUS, sizes[i])
            offset, mask = self.step(
                offset, mask, needed[i - 1], sizes[i - 1], sizes[i], grown, image_at(i, grown)
            )
            inner = needed[i].within(grown)
            offset, mask = offset[:, :, inner[0], inner[1]], mask[:, :, inner[0], inner[1]]
        return box, offset, mask


def _dependencies(region: Region, base: int, sizes: list[Size]) -> dict[int, Region]:
    """For `region` of the top level, the box of every level from `base` up that computing it
    reads, each grown by the refiner's reach at the level above."""
    top = len(sizes) - 1
    needed: dict[int, Region] = {top: region}
    for i in range(top, base, -1):
        grown = needed[i].grow(Refiner.RADIUS, sizes[i])
        needed[i - 1] = source_span(grown, sizes[i - 1], sizes[i])
    return needed


def tiles(size: Size, tile: int) -> Iterator[Region]:
    """Split a level into tiles of at most tile x tile pixels, row by row."""
    rows = math.ceil(size[0] / tile)
    cols = math.ceil(size[1] / tile)
    for r in range(rows):
        for c in range(cols):
            yield Region(
                r * tile, min(size[0], (r + 1) * tile), c * tile, min(size[1], (c + 1) * tile)
            )
