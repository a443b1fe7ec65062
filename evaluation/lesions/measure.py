"""Measures of what a retouch did to real, marked lesions, and to the skin and parts around them.

Every measure compares a photo before and after with the lesion marks (centre, radius in px):

- lesion contrast: CIE Lab ΔE (1976) between a lesion disc's mean and the mean of the ring
  around it (r..2r, other lesions' discs left out), before and after; the share removed is
  1 - after/before, clipped to [-1, 1];
- wide contrast: the same ΔE against a wide ring 3r..6r (outer radius at least 12 px), so that
  a lesion filled with the colour of a red blotch around it still counts while the blotch stays;
- texture kept: high-pass energy of L* (L* minus its Gaussian blur) on skin farther than 3r from
  every lesion, after over before;
- protected pixels changed: the share of pixels outside the (slightly dilated) skin mask that
  changed by more than 2 levels in any channel;
- edges added: the share of skin pixels where the gradient of smoothed L* grew by more than
  1 L* per px (a patch boundary or seam that was not in the photo).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

RING_OUTER = 2.0
# Wide contrast: a ring well clear of the lesion's own halo and of an inflamed area a few radii
# across, so that it holds the face's skin rather than the blotch the lesion sits in. The floor
# gives marks of 1-2 px a ring of skin and not of their own rim.
WIDE_INNER = 3.0
WIDE_OUTER = 6.0
WIDE_MIN_OUTER_PX = 12.0
FAR_FROM_LESION = 3.0
HIGH_PASS_SIGMA = 1.5
PROTECTED_LEVELS = 2
# Below this ΔE a mark is not a visible lesion against its ring, and a ratio of two small
# numbers says nothing: such marks are counted but left out of the contrast figures.
MIN_CONTRAST = 2.0
MIN_RING_PIXELS = 8
# Edges added: L* is smoothed first so that pixel noise, JPEG grain and pores (1-2 px) do not
# count, only edges that stay sharp at the scale of a lesion.
EDGE_SIGMA = 1.5
# A step of h L* blurred by sigma 1.5 peaks at h / (1.5 * sqrt(2 pi)) = h / 3.76 L* per px, so
# 1.0 L* per px is a new step of about 4 L* (roughly twice a just-noticeable difference in
# lightness). Lower, a re-synthesised grain starts to count: smoothed skin's own gradient has a
# median of about 0.5 L* per px on the marked photos, and shifting their grain by a few pixels
# (four photos, whole image) raises 2.5% of pixels by more than 0.5 but 0.5% by more than 1.0.
# Higher, faint pale patches are missed.
EDGE_ADDED = 1.0


@dataclass(frozen=True)
class Lesion:
    """A marked (or detected) lesion: centre and radius in pixels, and its kind."""

    x: float
    y: float
    r: float
    kind: str = "other"

    def scaled(self, factor: float) -> Lesion:
        """The same lesion on the photo resized by `factor`."""
        return Lesion(self.x * factor, self.y * factor, self.r * factor, self.kind)


def to_lab(image: np.ndarray) -> np.ndarray:
    """CIE Lab (D65; L* 0-100) of an (H, W, 3) uint8 sRGB image, float32."""
    return cv2.cvtColor(image.astype(np.float32) / 255, cv2.COLOR_RGB2Lab)


def _window(shape: tuple[int, ...], lesion: Lesion, reach: float) -> tuple[slice, slice]:
    h, w = shape[:2]
    pad = int(np.ceil(lesion.r * reach)) + 1
    x, y = round(lesion.x), round(lesion.y)
    return slice(max(0, y - pad), min(h, y + pad + 1)), slice(max(0, x - pad), min(w, x + pad + 1))


def _distance(rows: slice, cols: slice, lesion: Lesion) -> np.ndarray:
    yy, xx = np.mgrid[rows, cols]
    return np.hypot(xx - lesion.x, yy - lesion.y)


def discs(shape: tuple[int, ...], lesions: list[Lesion], reach: float = 1.0) -> np.ndarray:
    """Boolean (H, W): the union of the lesions' discs of radius `reach` x r."""
    out = np.zeros(shape[:2], bool)
    for lesion in lesions:
        rows, cols = _window(shape, lesion, reach)
        out[rows, cols] |= _distance(rows, cols, lesion) <= lesion.r * reach
    return out


def lesion_contrast(
    lab: np.ndarray,
    lesions: list[Lesion],
    inner: float = 1.0,
    outer: float = RING_OUTER,
    min_outer_px: float = 0.0,
) -> np.ndarray:
    """ΔE of each lesion's disc mean against its ring's mean; NaN where the ring is too small.

    `lab` is (H, W, 3) CIE Lab (see `to_lab`). The disc has radius r; the ring runs from
    `inner` r (exclusive) to `outer` r, or to `min_outer_px` px where that is larger, and
    leaves out the other lesions' discs (radius r). The defaults give the ring r..2r.
    """
    out = np.full(len(lesions), np.nan)
    for i, lesion in enumerate(lesions):
        # The floor is applied as a larger reach so that the window and the ring agree; with no
        # floor reach is `outer` itself, and the r..2r figures stay bit-identical.
        reach = max(outer, min_outer_px / lesion.r)
        rows, cols = _window(lab.shape, lesion, reach)
        dist = _distance(rows, cols, lesion)
        # Other lesions' discs are left out of the ring; only neighbours within reach can overlap.
        others = np.zeros(dist.shape, bool)
        for j, other in enumerate(lesions):
            if j != i and np.hypot(other.x - lesion.x, other.y - lesion.y) < (
                lesion.r * reach + other.r
            ):
                others |= _distance(rows, cols, other) <= other.r
        disc = dist <= lesion.r
        ring = (dist > lesion.r * inner) & (dist <= lesion.r * reach) & ~others
        if disc.sum() == 0 or ring.sum() < MIN_RING_PIXELS:
            continue
        patch = lab[rows, cols]
        out[i] = float(np.linalg.norm(patch[disc].mean(0) - patch[ring].mean(0)))
    return out


def wide_contrast(lab: np.ndarray, lesions: list[Lesion]) -> np.ndarray:
    """ΔE of each lesion's disc mean against the wider surroundings; NaN where no ring.

    `lab` is (H, W, 3) CIE Lab (see `to_lab`). Like `lesion_contrast`, but the ring runs from
    3r to 6r (its outer radius at least 12 px), other lesions' discs left out. The r..2r ring
    sees only the lesion's immediate surroundings: a lesion inside an inflamed red blotch,
    filled with the blotch's colour, leaves disc and inner ring alike while the blotch still
    stands out from the face's skin. Against the wide ring the blotch still counts, and a
    retouch that takes the redness of the whole area away is credited for it.
    """
    return lesion_contrast(lab, lesions, WIDE_INNER, WIDE_OUTER, WIDE_MIN_OUTER_PX)


def share_removed(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """1 - after/before per lesion, clipped to [-1, 1]; NaN where the lesion was not visible."""
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.clip(1 - after / before, -1, 1)
    return np.where(before >= MIN_CONTRAST, share, np.nan)


def high_pass_energy(image: np.ndarray, region: np.ndarray) -> float:
    """Mean squared high-pass of L* (minus a Gaussian blur of sigma 1.5 px) over `region`."""
    lightness = to_lab(image)[..., 0]
    low = cv2.GaussianBlur(lightness, (0, 0), HIGH_PASS_SIGMA)
    return float(np.mean((lightness - low)[region] ** 2)) if region.any() else float("nan")


def texture_region(skin: np.ndarray, lesions: list[Lesion]) -> np.ndarray:
    """Skin (mask > 127, eroded by 2 px) farther than 3r from every lesion."""
    inner = cv2.erode((skin > 127).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    return inner & ~discs(skin.shape, lesions, FAR_FROM_LESION)


def texture_kept(
    before: np.ndarray, after: np.ndarray, skin: np.ndarray, lesions: list[Lesion]
) -> float:
    """High-pass energy after over before on skin away from lesions: 1 keeps all texture."""
    region = texture_region(skin, lesions)
    return high_pass_energy(after, region) / high_pass_energy(before, region)


def protected_region(skin: np.ndarray) -> np.ndarray:
    """Pixels outside the skin mask (> 127) dilated by 0.2% of the long side (at least 1 px)."""
    px = max(1, round(0.002 * max(skin.shape)))
    grown = cv2.dilate((skin > 127).astype(np.uint8), np.ones((2 * px + 1, 2 * px + 1), np.uint8))
    return grown == 0


def protected_changed(before: np.ndarray, after: np.ndarray, skin: np.ndarray) -> tuple[int, int]:
    """(changed, total): pixels outside the dilated skin changed by more than 2 levels."""
    region = protected_region(skin)
    diff = np.abs(after.astype(np.int16) - before.astype(np.int16)).max(-1)
    return int((diff[region] > PROTECTED_LEVELS).sum()), int(region.sum())


def smoothed_gradient(lab: np.ndarray) -> np.ndarray:
    """Gradient magnitude (L* per px, central differences) of the L* of `lab` (see `to_lab`)
    smoothed by sigma 1.5 px."""
    lightness = cv2.GaussianBlur(np.ascontiguousarray(lab[..., 0]), (0, 0), EDGE_SIGMA)
    gy, gx = np.gradient(lightness)
    return np.hypot(gx, gy)


def edges_added_count(
    gradient_before: np.ndarray, gradient_after: np.ndarray, skin: np.ndarray
) -> tuple[int, int]:
    """Edges added by a retouch: (added, total) skin pixels (mask > 127), where added are those
    whose `smoothed_gradient` after exceeds the one before by more than 1 L* per px.

    A flat, pale patch pasted over the cheek counts along its boundary, a straight seam along
    its length; a lesion removed lowers the gradient and does not count. Counts, not a share,
    so that photos can be pooled over all their skin pixels.
    """
    region = skin > 127
    # Only a rise counts: removing a lesion flattens its rim (a drop), which is the point of a
    # retouch; a boundary drawn into smooth skin, or a seam, is a rise.
    rise = gradient_after - gradient_before
    return int((rise[region] > EDGE_ADDED).sum()), int(region.sum())


def disc_means(values: np.ndarray, lesions: list[Lesion]) -> np.ndarray:
    """Mean of a (H, W) array over each lesion's disc."""
    out = np.zeros(len(lesions))
    for i, lesion in enumerate(lesions):
        rows, cols = _window(values.shape, lesion, 1.0)
        disc = _distance(rows, cols, lesion) <= lesion.r
        out[i] = float(values[rows, cols][disc].mean()) if disc.any() else 0.0
    return out


def ring_means(values: np.ndarray, lesions: list[Lesion], inner: float, outer: float) -> np.ndarray:
    """Mean of a (H, W) array over each lesion's annulus `inner` r..`outer` r."""
    out = np.zeros(len(lesions))
    for i, lesion in enumerate(lesions):
        rows, cols = _window(values.shape, lesion, outer)
        dist = _distance(rows, cols, lesion)
        ring = (dist > lesion.r * inner) & (dist <= lesion.r * outer)
        out[i] = float(values[rows, cols][ring].mean()) if ring.any() else 0.0
    return out


def centre_values(values: np.ndarray, lesions: list[Lesion]) -> np.ndarray:
    """A (H, W) array's value at each lesion's centre pixel."""
    h, w = values.shape[:2]
    return np.array(
        [values[min(h - 1, round(les.y)), min(w - 1, round(les.x))] for les in lesions], float
    )


def summarize(shares: np.ndarray) -> dict[str, float | int]:
    """Median share removed and the share of lesions at least halved, over visible lesions."""
    visible = shares[~np.isnan(shares)]
    if visible.size == 0:
        return {"lesions": 0, "median_removed": float("nan"), "halved": float("nan")}
    return {
        "lesions": int(visible.size),
        "median_removed": float(np.median(visible)),
        "halved": float(np.mean(visible >= 0.5)),
    }
