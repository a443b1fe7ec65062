"""A classical detect-and-fill retouch, and the local fill it shares with the oracle.

`detect_and_fill` finds blemishes by itself (red or dark blobs in CIE Lab, inside the skin
mask) and never sees the evaluation's marks; `fill_discs` on the marks is the oracle, an upper
bound for any method that fills locally.
"""

from __future__ import annotations

import cv2
import numpy as np
from skimage.feature import blob_log

from evaluation.lesions.measure import Lesion, discs, to_lab

# A fill covers the lesion's halo (acne's red rim spreads past the papule) as well as the disc.
FILL_GROW = 1.5
TEXTURE_SIGMA = 1.0
# Blob score in Lab units: red excess over the local background plus half the darkening.
DETECT_THRESHOLD = 6.0
DARK_WEIGHT = 0.5
# The LoG response only proposes; the score at the blob's centre decides.
LOG_THRESHOLD = 0.3


def fill_discs(
    image: np.ndarray, lesions: list[Lesion], gate: np.ndarray | None = None
) -> np.ndarray:
    """`image` with each lesion's disc (grown 1.5x) refilled from the skin around it.

    The fill keeps texture: the photo's low-pass (Gaussian, sigma 1 px) is inpainted inside the
    discs (Telea) and the photo's own high-pass is added back, limited to the grain's size
    around the discs, so the skin's grain stays while the lesion's colour offset goes. The edge
    is feathered over 2 px. `gate` (uint8 0-255) scales the change, as the engine's skin mask
    does.
    """
    if not lesions:
        return image.copy()
    hole = discs(image.shape, lesions, FILL_GROW)
    pixels = image.astype(np.float32)
    low = cv2.GaussianBlur(pixels, (0, 0), TEXTURE_SIGMA)
    low_u8 = np.clip(low, 0, 255).round().astype(np.uint8)
    radius = max(3, round(float(np.median([les.r for les in lesions]))))
    filled_low = cv2.inpaint(low_u8, hole.astype(np.uint8), radius, cv2.INPAINT_TELEA)
    detail = pixels - low
    # The lesion's own rim is high-pass too: inside the hole, detail is limited to the size of
    # the grain in the band around it, which keeps pores and drops the rim.
    band = discs(image.shape, lesions, 2 * FILL_GROW) & ~hole
    limit = np.percentile(np.abs(detail[band]), 75, axis=0) if band.any() else 0.0
    filled = filled_low.astype(np.float32) + np.clip(detail, -limit, limit)
    weight = cv2.GaussianBlur(hole.astype(np.float32), (0, 0), 1.0)
    weight = np.maximum(weight, hole)
    if gate is not None:
        weight = weight * (gate.astype(np.float32) / 255)
    out = pixels + weight[..., None] * (filled - pixels)
    return np.clip(out, 0, 255).round().astype(np.uint8)


def _median(channel: np.ndarray, scale: float, offset: float, k: int) -> np.ndarray:
    """A median blur of a Lab channel, taken in 8 bits (OpenCV's large-window median)."""
    coded = np.clip(channel * scale + offset, 0, 255).round().astype(np.uint8)
    return (cv2.medianBlur(coded, k).astype(np.float32) - offset) / scale


def detect_blemishes(image: np.ndarray, skin: np.ndarray) -> list[Lesion]:
    """Red or dark blobs on the skin (mask > 127), found by a Laplacian of Gaussian in Lab.

    The background is a median over a window ~1/10 of the skin's extent, so scale follows the
    face; scores are the red excess (a*) plus half the darkening (L*) against it, in Lab units.
    """
    inside = skin > 127
    if not inside.any():
        return []
    lab = to_lab(image)
    extent = float(np.sqrt(inside.sum()))
    k = max(5, int(extent / 10) | 1)
    background_l = _median(lab[..., 0], 2.55, 0.0, k)
    background_a = _median(lab[..., 1], 1.0, 128.0, k)
    red = np.maximum(lab[..., 1] - background_a, 0)
    dark = np.maximum(background_l - lab[..., 0], 0)
    # Smoothed by 1 px so that JPEG noise and single pores do not make blobs of their own.
    score = cv2.GaussianBlur((red + DARK_WEIGHT * dark).astype(np.float32), (0, 0), 1.0)
    score = np.where(inside, score, 0)
    max_sigma = max(2.0, extent / 60)
    blobs = blob_log(
        score,
        min_sigma=1.5,
        max_sigma=max_sigma,
        num_sigma=6,
        threshold=LOG_THRESHOLD,
        overlap=0.5,
    )
    found = []
    for y, x, sigma in blobs:
        if score[int(y), int(x)] >= DETECT_THRESHOLD:
            found.append(Lesion(float(x), float(y), float(sigma * np.sqrt(2)), "detected"))
    return found


def detect_and_fill(image: np.ndarray, skin: np.ndarray) -> tuple[np.ndarray, list[Lesion]]:
    """The classical pipeline: detect blemishes on the skin, fill them, gate by the skin."""
    found = detect_blemishes(image, skin)
    return fill_discs(image, found, gate=skin), found
