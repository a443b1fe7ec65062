"""A red-blob prior for the mask branch: evidence of real acne that painted training defects
did not teach.

On real acne the mask branch stays silent on about one lesion in eight inside the skin gate
(90 of 683 marked ones, `python -m evaluation.lesions`): faint papules, and spots inside an
inflamed patch, unlike anything the training painter draws. What they share is a small region
pinker than everything around it. This module measures exactly that, with no learned weights,
and the LRL adds it to its mask logits, so the network's own evidence still counts: where it
is sure there is nothing to retouch (logits well below minus the gain), the prior does not
overrule it.

Pink is CIE a* - b*: red without yellow. An inflamed lesion is redder than the skin around it
and hardly yellower (on the marked lesions the b* rise is a median 0.07 of the a* rise); the
red things on a face that are not lesions are orange or brown as well (the crease where an ala
meets the cheek, a glasses frame's rim, a wrinkle's shadow, a freckle: b* rises 0.7-1.0 times
as much), and a* alone took them for lesions.

The measure is a morphological top-hat of that channel: the channel minus its opening by a
line 2r + 1 pixels long, in twelve directions at most 18 degrees apart, keeping the largest
opening. A blob narrower than the line in every direction is removed by all the openings and
stands out; an edge (a hat brim, the border of a red cheek) or a thin line at any angle (a
strand of hair, a frame's rim) survives the opening along itself and does not; a patch wider
than the line is not a blob either. Radii are in the LRL's pixels at the full working size and
shrink with smaller crops, so they follow the face: on a face a few dozen pixels wide no lesion
is resolvable and the prior is off.

The top-hat looks only inside the face's area, so a blob counts against the face around it, not
against the wall behind an earlobe. A pink blob far darker than the skin around it is a
shadowed notch (in front of the ear, in its concha), not a lesion, and the prior lets it be:
filled, it turned into a bright speck.

Last, the prior is softened by a small Gaussian. The top-hat of a blob is a plateau with steep
sides (a thin pink streak gives a rectangle), and a fill that stops at such an edge leaves a
pale patch with straight sides or a bright speck; softened, the blend fades in as the network's
own mask does.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from model.net.config import ABPNConfig
from model.net.lrl import blur, gaussian_kernel

# Line directions (dy, dx) of the openings, at most 18 degrees apart: a line 3 px wide at any
# angle holds a 17-px segment along one of them, so it survives that opening (with only the
# four axes and diagonals, a glasses frame's rim at 60 degrees counted as a row of blobs).
_DIRECTIONS = (
    (0, 1), (1, 4), (1, 2), (1, 1), (2, 1), (4, 1),
    (1, 0), (4, -1), (2, -1), (1, -1), (1, -2), (1, -4),
)  # fmt: skip
# Below this radius (in the crop's pixels) a blob is a pixel or two: noise, not a lesion.
MIN_RADIUS = 2
# Gaussian smoothing (LRL pixels) before the top-hat, so JPEG chroma noise makes no blobs.
SMOOTH_SIGMA = 1.0
# What the top-hat sees beyond the face's area (a* - b* stays within +-200 on sRGB).
_OUTSIDE = 1e4
# L* units over which a blob darker than `blob_shade` below its surroundings fades out.
SHADE_SPAN = 5.0


def cie_lab(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """CIE L*, a* and b* (D65) of sRGB values in [0, 1], (B, 3, h, w) -> three (B, 1, h, w)."""
    x = rgb.float().clamp(0.0, 1.0)
    lin = torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)
    r, g, b = lin[:, 0:1], lin[:, 1:2], lin[:, 2:3]
    fx = _lab_f((0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047)
    fy = _lab_f(0.2126 * r + 0.7152 * g + 0.0722 * b)
    fz = _lab_f((0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883)
    return 116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)


def _lab_f(t: torch.Tensor) -> torch.Tensor:
    return torch.where(t > 0.008856, t.clamp_min(1e-6) ** (1.0 / 3.0), 7.787 * t + 16.0 / 116.0)


def _line_max(x: torch.Tensor, radius: int, direction: tuple[int, int]) -> torch.Tensor:
    """Max over the part inside the crop of a line of 2 radius + 1 points through each pixel,
    `direction` (dy, dx) apart.

    Windows double (1, 2, 4, ... points) and a last step tops them up to the full length, so a
    line of n points costs about log2(n) maxima instead of n. Outside the crop counts as -inf:
    negated, it is left out of the min too, so a strand that runs out of the crop stays a
    strand up to its end."""
    dy, dx = direction
    h, w = x.shape[-2:]
    length = 2 * radius + 1
    # Forward windows on the crop padded by the line's reach: the one starting `radius` steps
    # back along the line from a pixel is centred on it.
    py, px = radius * abs(dy), radius * abs(dx)
    out = F.pad(x, (px, px, py, py), value=float("-inf"))
    n = 1
    while 2 * n <= length:
        out = _widen(out, n * dy, n * dx)
        n *= 2
    if n < length:
        out = _widen(out, (length - n) * dy, (length - n) * dx)
    y0, x0 = py - radius * dy, px - radius * dx
    return out[..., y0 : y0 + h, x0 : x0 + w]


def _widen(x: torch.Tensor, sy: int, sx: int) -> torch.Tensor:
    """out[q] = max(x[q], x[q + (sy, sx)]), and x[q] where q + (sy, sx) falls outside."""
    h, w = x.shape[-2:]
    out = x.clone()
    y0, y1, x0, x1 = max(0, -sy), h - max(0, sy), max(0, -sx), w - max(0, sx)
    torch.maximum(
        x[..., y0:y1, x0:x1],
        x[..., y0 + sy : y1 + sy, x0 + sx : x1 + sx],
        out=out[..., y0:y1, x0:x1],
    )
    return out


def _opening(x: torch.Tensor, radius: int, direction: tuple[int, int]) -> torch.Tensor:
    eroded = -_line_max(-x, radius, direction)
    return _line_max(eroded, radius, direction)


def red_blob_prior(
    image: torch.Tensor,
    radius: int,
    floor: float,
    span: float,
    area: torch.Tensor | None = None,
    shade: float = 0.0,
    soften: float = 0.0,
) -> torch.Tensor:
    """Where `image` (1, 3, h, w) in [0, 1] has a blob pinker (CIE a* - b*) than its
    surroundings, in [0, 1].

    0 up to `floor` units of top-hat, rising to 1 at `floor + span`; all zero when `radius` is
    under `MIN_RADIUS`. With `area` (1, 1, h, w) of 0 or 1, the face's area, a blob counts
    only against what is around it inside that area: a pink earlobe against a grey wall is a
    blob of the photo, not of the face, and a spot near the jaw still is one. With `shade`, a
    blob more than `shade` L* units darker than the skin around it fades out over the next
    `SHADE_SPAN`: a shadowed notch, not a lesion. With `soften`, the result is blurred by a
    Gaussian of that sigma (over the crop only), so its edges fade in."""
    if radius < MIN_RADIUS:
        return image.new_zeros((image.shape[0], 1, *image.shape[-2:]))
    lightness, a, b = cie_lab(image)
    # Smoothed over the crop only: a replicated border would turn a strand that leaves the
    # crop into a stub, which the openings take for a blob.
    k = gaussian_kernel(SMOOTH_SIGMA).to(a.device)
    ones = blur(torch.ones_like(a), k)
    pink = blur(a - b, k) / ones
    if area is not None:
        # Beyond the face, pinker than anything: no line reaching there lowers an opening, so
        # only the face's own pixels decide. Finite, so that the top-hat there is 0, not NaN.
        pink = torch.where(area > 0, pink, torch.full_like(pink, _OUTSIDE))
    # Steps longer than a pixel take fewer points, so every line spans about 2 radius + 1 px.
    opened = torch.stack(
        [_opening(pink, max(1, round(radius / math.hypot(*d))), d) for d in _DIRECTIONS]
    ).amax(0)
    prior = ((pink - opened - floor) / span).clamp(0.0, 1.0)
    if shade > 0.0:
        depth = _depth(blur(lightness, k) / ones, radius, area)
        # A dark blob's rim, half mixed with the skin around, is less deep than its middle but
        # the same notch: the veto spreads 2 px.
        veto = F.max_pool2d(((depth - shade) / SHADE_SPAN).clamp(0.0, 1.0), 5, 1, 2)
        prior = prior * (1.0 - veto)
    if soften > 0.0:
        ks = gaussian_kernel(soften).to(prior.device)
        prior = blur(prior, ks) / blur(torch.ones_like(prior), ks)
    return prior


def _depth(lightness: torch.Tensor, radius: int, area: torch.Tensor | None) -> torch.Tensor:
    """How much darker (L*) each pixel is than the face's skin around it: a Gaussian average
    of half the blob radius, over the face's area only, taken at half resolution (a smooth
    average loses nothing there, at a fraction of the cost)."""
    weight = torch.ones_like(lightness) if area is None else (area > 0).to(lightness)
    k = gaussian_kernel(radius / 4).to(lightness.device)
    num = blur(F.avg_pool2d(lightness * weight, 2, ceil_mode=True), k)
    den = blur(F.avg_pool2d(weight, 2, ceil_mode=True), k).clamp_min(1e-6)
    around = F.interpolate(num / den, scale_factor=2.0, mode="bilinear", align_corners=False)
    return around[..., : lightness.shape[-2], : lightness.shape[-1]] - lightness


def blob_radius(cfg: ABPNConfig, size: tuple[int, int]) -> int:
    """The prior's line radius for a working-size crop of `size`: `cfg.blob_radius` at the full
    working size, in proportion below it."""
    return round(cfg.blob_radius * max(size) / cfg.lrl_size)


def blob_prior(
    image: torch.Tensor, cfg: ABPNConfig, zone: torch.Tensor | None = None
) -> torch.Tensor:
    """The prior of one working-size crop (3, h, w), as (1, h, w), with `cfg`'s settings.

    `zone` (2, h, w) of 0 or 1, from `model.faces.blob_zone`, gives the face's area (the
    top-hat looks only inside it) and where the prior may act."""
    size = (image.shape[-2], image.shape[-1])
    radius = blob_radius(cfg, size)
    area = None if zone is None else zone[None, 0:1].to(image.device)
    # The softening follows the crop's scale, as the radius does.
    soften = cfg.blob_blur * max(size) / cfg.lrl_size
    prior = red_blob_prior(
        image[None], radius, cfg.blob_floor, cfg.blob_span, area, cfg.blob_shade, soften
    )[0]
    return prior if zone is None else prior * zone[1:2].to(prior)
