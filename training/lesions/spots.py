"""Lesion-like spots on real faces, found without any painter: for the skin gate's coverage and
for the statistics the training painter is fitted to.

A spot is a local extremum, over position and scale, of the Lab contrast between a disc and the
ring around it (the measure of ``../shared/DATA.md``, "Real blemishes"), in the face area (the
gate's, ``model.faces.face_area``) grown by :data:`OVAL_GROWTH` minus the landmark hulls of
eyes, brows, lips and nostrils. It is **not** limited to the skin gate or its margins: that
is what is measured. Radii run from 0.6% to 4% of the face width (:data:`RADII`).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from model.faces import Face, face_area, protected_parts

RADII = (0.006, 0.009, 0.013, 0.019, 0.027, 0.04)
"""Spot radii tried, as shares of the face width."""
MIN_CONTRAST = 3.0
"""Smallest blob contrast (CIE Lab units, against every quarter of the ring) that counts as a
spot: plain skin's pores and grain at these scales stay below it on the faces measured."""
OVAL_GROWTH = 0.06
"""How far past the gate's face area (share of the face width) spots are looked for: lesions
at the temples, the hairline and along the jaw count, though the gate does not cover them."""
RED_SHIFT = 2.0
"""A spot whose disc is this many a* units redder than its ring is *red* (inflamed)."""


def is_strict(d_lab: np.ndarray, radius: float, face_width: float) -> bool:
    """A red lesion the measure trusts: at least RED_SHIFT a* units redder than its ring, a Lab
    contrast of 4 or more, and at most 2% of the face width in radius (larger spots found this
    way are mostly shading)."""
    d = np.asarray(d_lab, np.float64)
    return bool(d[1] >= RED_SHIFT and np.linalg.norm(d) >= 4.0 and radius <= 0.02 * face_width)


@dataclass(frozen=True)
class Spot:
    """One lesion-like spot, in photo pixels and CIE Lab units."""

    x: float
    y: float
    radius: float
    """Disc radius in pixels."""
    d_lab: tuple[float, float, float]
    """Disc mean minus ring mean: (dL*, da*, db*)."""
    face_width: float
    """Width of its face in pixels."""

    @property
    def strict(self) -> bool:
        """A red lesion the measure trusts (:func:`is_strict`)."""
        return is_strict(np.asarray(self.d_lab), self.radius, self.face_width)


def _disc(r: float) -> np.ndarray:
    k = max(1, round(r))
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1))


def lab_float(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> float32 CIE Lab (L* 0-100, a* and b* signed)."""
    return cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)


def _kernels(r: float) -> tuple[np.ndarray, list[np.ndarray]]:
    """The disc of radius r and the four quarters (right, down, left, up) of the ring from
    1.25 r to 2.5 r around it, as float32 kernels of one size."""
    kr = max(2, round(2.5 * r))
    yy, xx = np.mgrid[-kr : kr + 1, -kr : kr + 1].astype(np.float32)
    d = np.hypot(yy, xx)
    disc = (d <= max(1.0, r)).astype(np.float32)
    ring = (d > 1.25 * max(1.0, r)) & (d <= kr)
    angle = np.arctan2(yy, xx)
    quarters = []
    for centre in (0.0, 0.5 * np.pi, np.pi, -0.5 * np.pi):
        off = np.abs(np.angle(np.exp(1j * (angle - centre))))
        quarters.append((ring & (off <= np.pi / 4)).astype(np.float32))
    return disc, quarters


def _blob_contrast(lab: np.ndarray, valid: np.ndarray, r: float) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel: disc mean minus ring mean (Lab) and the blob contrast, the smallest part of
    that difference that holds against every quarter of the ring. An edge (a shadow line, a
    glasses frame) differs from one side of its ring only, so its blob contrast is about zero;
    a spot differs from all four."""
    disc, quarters = _kernels(r)
    w = valid.astype(np.float32)
    wl = lab * w[..., None]

    def mean(kernel: np.ndarray) -> np.ndarray:
        num = cv2.filter2D(wl, -1, kernel, borderType=cv2.BORDER_CONSTANT)
        den = cv2.filter2D(w, -1, kernel, borderType=cv2.BORDER_CONSTANT)
        return num / np.maximum(den, 1e-6)[..., None]

    centre = mean(disc)
    sides = [centre - mean(q) for q in quarters]
    d = sum(sides) / 4.0
    unit = d / np.maximum(np.linalg.norm(d, axis=-1, keepdims=True), 1e-6)
    blob = np.min([np.sum(s * unit, axis=-1) for s in sides], axis=0)
    return d, blob


def contrast_maps(
    lab: np.ndarray, valid: np.ndarray, size: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per pixel, over the radii of :data:`RADII` (face `size` pixels wide): the best blob
    contrast, its radius in pixels and its disc-minus-ring Lab difference (H, W, 3)."""
    best = np.zeros(valid.shape, np.float32)
    best_r = np.zeros(valid.shape, np.float32)
    best_d = np.zeros((*valid.shape, 3), np.float32)
    for share in RADII:
        r = max(1.0, share * size)
        d, c = _blob_contrast(lab, valid, r)
        better = c > best
        best[better], best_r[better], best_d[better] = c[better], r, d[better]
    return best, best_r, best_d


def find_spots(image: np.ndarray, face: Face) -> list[Spot]:
    """Lesion-like spots of one face (with landmarks) of an (H, W, 3) uint8 RGB photo, the
    strongest first."""
    size = face.width
    h, w = image.shape[:2]
    pts = face.landmarks
    x0, y0 = np.floor(pts.min(axis=0)).astype(int)
    x1, y1 = np.ceil(pts.max(axis=0)).astype(int)
    pad = round(0.1 * size)
    x0, y0, x1, y1 = max(0, x0 - pad), max(0, y0 - pad), min(w, x1 + pad), min(h, y1 + pad)
    local = pts - (x0, y0)
    shape = (y1 - y0, x1 - x0)
    # The gate's own jaw growth is left out: the training set was drawn without it.
    area = face_area(shape, local, size, jaw_growth=0.0)
    grown = cv2.dilate(area, _disc(OVAL_GROWTH * size))
    # A face size of 0 gives the parts' bare hulls (grown by one pixel), not the gate's margins.
    region = grown & (1 - protected_parts(shape, local, 0.0))
    best, best_r, best_d = contrast_maps(lab_float(image[y0:y1, x0:x1]), region > 0, size)
    # Local maxima over a neighbourhood of the spot's own size: one spot, one centre.
    peak = best >= cv2.dilate(best, np.ones((5, 5), np.uint8))
    # A disc must lie inside the measured region, or its ring mixes in a face part's colour.
    inside = cv2.erode(region, _disc(2)) > 0
    ys, xs = np.nonzero(peak & inside & (best >= MIN_CONTRAST))
    spots: list[Spot] = []
    for i in np.argsort(-best[ys, xs]):
        y, x, r = int(ys[i]), int(xs[i]), float(best_r[ys[i], xs[i]])
        if any((s.x - x0 - x) ** 2 + (s.y - y0 - y) ** 2 < (s.radius + r) ** 2 for s in spots):
            continue
        dl = tuple(float(v) for v in best_d[y, x])
        spots.append(Spot(float(x + x0), float(y + y0), r, dl, size))
    return spots
