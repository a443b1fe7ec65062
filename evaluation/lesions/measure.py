"""Measures of what a retouch did to real, marked lesions, and to the skin and parts around them.

Every measure compares a photo before and after with the lesion marks (centre, radius in px):

- lesion contrast: CIE Lab ΔE (1976) between a lesion disc's mean and the mean of the ring
  around it (r..2r, other lesions' discs left out), before and after; the share removed is
  1 - after/before, clipped to [-1, 1];
- texture kept: high-pass energy of L* (L* minus its Gaussian blur) on skin farther than 3r from
  every lesion, after over before;
- protected pixels changed: the share of pixels outside the (slightly dilated) skin mask that
  changed by more than 2 levels in any channel.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

RING_OUTER = 2.0
FAR_FROM_LESION = 3.0
HIGH_PASS_SIGMA = 1.5
PROTECTED_LEVELS = 2
# Below this ΔE a mark is not a visible lesion against its ring, and a ratio of two small
# numbers says nothing: such marks are counted but left out of the contrast figures.
MIN_CONTRAST = 2.0
MIN_RING_PIXELS = 8


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


def lesion_contrast(lab: np.ndarray, lesions: list[Lesion]) -> np.ndarray:
    """ΔE of each lesion's disc mean against its ring's mean; NaN where the ring is too small."""
    out = np.full(len(lesions), np.nan)
    # Other lesions' discs are left out of the ring; only neighbours within reach can overlap it.
    for i, lesion in enumerate(lesions):
        rows, cols = _window(lab.shape, lesion, RING_OUTER)
        dist = _distance(rows, cols, lesion)
        others = np.zeros(dist.shape, bool)
        for j, other in enumerate(lesions):
            if j != i and np.hypot(other.x - lesion.x, other.y - lesion.y) < (
                lesion.r * RING_OUTER + other.r
            ):
                others |= _distance(rows, cols, other) <= other.r
        disc = dist <= lesion.r
        ring = (dist > lesion.r) & (dist <= lesion.r * RING_OUTER) & ~others
        if disc.sum() == 0 or ring.sum() < MIN_RING_PIXELS:
            continue
        patch = lab[rows, cols]
        out[i] = float(np.linalg.norm(patch[disc].mean(0) - patch[ring].mean(0)))
    return out


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
