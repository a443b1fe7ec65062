"""Paint synthetic skin defects onto a clean face photo, for evaluation only.

This painter is deliberately independent of the training data's painter (`training.data`): it
shares no code with it, so evaluation scores do not reward learning one painter's quirks.

Cost: one copy of the photo, one full-frame pass over the skin mask to find where skin is, and
then each defect is painted inside its own small box, so an 8K photo costs about as much as a
small one plus the copy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from evaluation.evalpaint.colour import lab_to_srgb, srgb_to_lab
from evaluation.evalpaint.kinds import Blemish, Light, draw_blemish

# A pixel counts as changed (and is painted) only if some channel moves by this much.
MIN_LEVELS = 2
# Skin values this high count as "surely skin": defect centres and their whole reach go there.
FULL_SKIN = 0.99
# A defect's centre must have surely-skin this many extents around it.
_CLEARANCE = 1.25
_PLACEMENT_TRIES = 200
_ROWS_PER_CHUNK = 256
# Redness shows less through more melanin: erythema's a* shift is scaled by L*/_REDNESS_L.
_REDNESS_L = 62.0


@dataclass(frozen=True)
class PaintedFace:
    """A clean photo with defects painted, and exactly where it changed."""

    image: np.ndarray  # (H, W, 3) uint8: the clean photo with defects painted
    mask: np.ndarray  # (H, W) bool: exactly the pixels where image differs from the clean input
    kinds: tuple[str, ...]  # the kind of each defect painted, in order


def paint_face(
    clean: np.ndarray,
    skin: np.ndarray,
    face_width: float,
    rng: np.random.Generator,
    count: int | None = None,
) -> PaintedFace:
    """Paint `count` random skin defects on a copy of `clean`.

    clean: (H, W, 3) uint8 photo; skin: (H, W) float in [0, 1] or bool, where defects may go
    (only pixels with skin >= 0.5 may change, and a defect's centre must sit where skin is 1
    well away from the skin boundary); face_width: the face's width in pixels of THIS image
    (defect sizes scale with it); count: number of defects (default: drawn, 6-20).

    A defect for which no room is found (small or crowded skin) is left out, so `kinds` can be
    shorter than `count`. The result depends only on the inputs and the state of `rng`.
    """
    _check_inputs(clean, skin, face_width, count)
    if count is None:
        count = int(rng.integers(6, 21))
    # Separate streams for what is drawn and where it goes, so the same seed gives the same
    # defects (kinds, relative sizes, colours) at every resolution of the same face.
    design, placement = (np.random.default_rng(s) for s in rng.integers(0, 2**63, size=2))
    angle = design.uniform(math.radians(-150), math.radians(-30))  # light from above
    light: Light = (math.cos(angle), math.sin(angle))

    image = clean.copy()
    mask = np.zeros(clean.shape[:2], dtype=bool)
    bounds = _skin_bounds(skin)
    placed: list[tuple[float, float, float]] = []
    kinds: list[str] = []
    for _ in range(count):
        blemish = draw_blemish(design, face_width, light)
        centre = None if bounds is None else _find_centre(skin, bounds, blemish, placed, placement)
        if centre is None:
            continue
        _paint_one(image, mask, clean, skin, blemish, centre)
        placed.append((*centre, blemish.extent))
        kinds.append(blemish.kind)
    return PaintedFace(image, mask, tuple(kinds))


def _check_inputs(
    clean: np.ndarray, skin: np.ndarray, face_width: float, count: int | None
) -> None:
    """Raise ValueError for inputs the painter cannot honour."""
    if not isinstance(clean, np.ndarray) or clean.dtype != np.uint8:
        raise ValueError("clean must be a uint8 numpy array")
    if clean.ndim != 3 or clean.shape[2] != 3:
        raise ValueError(f"clean must be (H, W, 3), got {clean.shape}")
    if not isinstance(skin, np.ndarray) or skin.shape != clean.shape[:2]:
        raise ValueError(f"skin must be an (H, W) = {clean.shape[:2]} array")
    if not (skin.dtype == np.bool_ or np.issubdtype(skin.dtype, np.floating)):
        raise ValueError(f"skin must be bool or float, got {skin.dtype}")
    if not (math.isfinite(face_width) and face_width > 0):
        raise ValueError(f"face_width must be a positive number of pixels, got {face_width}")
    if count is not None and count < 0:
        raise ValueError(f"count must be >= 0, got {count}")


def _skin_bounds(skin: np.ndarray) -> tuple[int, int, int, int] | None:
    """(top, bottom, left, right), inclusive, of the surely-skin pixels; None if there are none."""
    rows = np.zeros(skin.shape[0], dtype=bool)
    cols = np.zeros(skin.shape[1], dtype=bool)
    # In row chunks, so an 8K mask never needs a full-frame temporary.
    for top in range(0, skin.shape[0], _ROWS_PER_CHUNK):
        sure = skin[top : top + _ROWS_PER_CHUNK] >= FULL_SKIN
        rows[top : top + _ROWS_PER_CHUNK] = sure.any(axis=1)
        cols |= sure.any(axis=0)
    if not rows.any():
        return None
    ys, xs = np.flatnonzero(rows), np.flatnonzero(cols)
    return int(ys[0]), int(ys[-1]), int(xs[0]), int(xs[-1])


def _find_centre(
    skin: np.ndarray,
    bounds: tuple[int, int, int, int],
    blemish: Blemish,
    placed: list[tuple[float, float, float]],
    rng: np.random.Generator,
) -> tuple[float, float] | None:
    """A sub-pixel centre well inside the skin and clear of earlier defects, or None."""
    top, bottom, left, right = bounds
    reach = _CLEARANCE * blemish.extent + 2.0
    for _ in range(_PLACEMENT_TRIES):
        cy = rng.uniform(top - 0.5, bottom + 0.5)
        cx = rng.uniform(left - 0.5, right + 0.5)
        if skin[round(cy), round(cx)] < FULL_SKIN:
            continue
        # Defects do not overlap, so each painted region belongs to one kind.
        if any(math.hypot(cy - py, cx - px) < blemish.extent + pe + 1.0 for py, px, pe in placed):
            continue
        if _surely_skin_around(skin, cy, cx, reach):
            return cy, cx
    return None


def _surely_skin_around(skin: np.ndarray, cy: float, cx: float, reach: float) -> bool:
    """Whether every pixel within `reach` of (cy, cx) is inside the image and surely skin."""
    half = math.ceil(reach)
    iy, ix = round(cy), round(cx)
    if iy - half < 0 or ix - half < 0:
        return False
    if iy + half >= skin.shape[0] or ix + half >= skin.shape[1]:
        return False
    window = skin[iy - half : iy + half + 1, ix - half : ix + half + 1]
    offsets = np.arange(-half, half + 1)
    disc = offsets[:, None] ** 2 + offsets[None, :] ** 2 <= reach * reach
    return bool((window[disc] >= FULL_SKIN).all())


def _paint_one(
    image: np.ndarray,
    mask: np.ndarray,
    clean: np.ndarray,
    skin: np.ndarray,
    blemish: Blemish,
    centre: tuple[float, float],
) -> None:
    """Paint one defect into `image` and `mask`, touching only its own box."""
    cy, cx = centre
    half = math.ceil(blemish.extent) + 1
    y0, x0 = max(round(cy) - half, 0), max(round(cx) - half, 0)
    y1 = min(round(cy) + half + 1, image.shape[0])
    x1 = min(round(cx) + half + 1, image.shape[1])
    box = (slice(y0, y1), slice(x0, x1))
    y = (np.arange(y0, y1, dtype=np.float32) - np.float32(cy))[:, None]
    x = (np.arange(x0, x1, dtype=np.float32) - np.float32(cx))[None, :]

    # Skin between 0.5 and 1 fades the defect out; at or below 0.5 nothing changes.
    weight = np.clip((skin[box].astype(np.float32) - 0.5) * 2.0, 0.0, 1.0)
    current = image[box].astype(np.float32)
    lab = srgb_to_lab(current)
    mean = (lab * weight[..., None]).sum(axis=(0, 1)) / max(float(weight.sum()), 1e-6)
    shift = blemish.render(x, y, mean)

    redness = float(np.clip(mean[0] / _REDNESS_L, 0.45, 1.1))
    keep = 1.0 - np.clip(weight * shift.grey, 0.0, 1.0)
    moved = np.empty_like(lab)
    gain = weight * np.maximum(shift.gain, -0.9)
    moved[..., 0] = lab[..., 0] * (1.0 + gain) + weight * shift.lift
    moved[..., 1] = lab[..., 1] * keep + weight * shift.red * redness
    moved[..., 2] = lab[..., 2] * keep + weight * shift.yellow
    # Add the change to the pixels rather than converting back: where the shift is zero the
    # change is exactly zero, so round-trip error cannot touch pixels the defect does not reach.
    painted = current + (lab_to_srgb(moved) - lab_to_srgb(lab))
    painted = np.clip(np.rint(painted), 0, 255).astype(np.uint8)

    before = clean[box]
    changed = np.abs(painted.astype(np.int16) - before).max(axis=-1) >= MIN_LEVELS
    image[box] = np.where(changed[..., None], painted, before)
    mask[box] = changed
