"""Blemish synthesiser: paints realistic skin defects onto clean images, with exact masks.

Defect kinds (:data:`DEFECT_KINDS`):

``acne``
    Inflamed papules: a raised red dome with a soft falloff, a wider faint halo of redness,
    Lambertian shading from one light direction per image, sometimes a pale pustule head or a
    specular glint.
``mark``
    Acne marks and dark spots (post-inflammatory hyperpigmentation): flat, irregular, brownish or
    red-brown, with edges from soft to fairly crisp.
``freckles``
    Clusters of small tan dots of varying strength.
``scar``
    Small scars: thin short curved strokes, usually paler and pinker than the skin around them,
    smoother (they replace some texture) and slightly sunken (a shadow on one side); sometimes
    darker instead.
``blotch``
    Uneven tone: larger, irregular, low-contrast reddish or brownish patches.
``macule``
    Brown macules (lentigines, dark freckles): flat, fairly uniform brown, edges from soft to
    crisp, larger than marks.
``bruise``
    Grey and bluish marks (healing scabs, small bruises, vein shadows): flat, desaturated.
``pustule``
    A pale yellow-white or white head inside a red inflamed ring; sometimes with no ring at all
    (a whitehead: a small pale, low-contrast bump).
``blackhead``
    Tiny dark grey-brown dots, the smallest kind, one to five together.

Colour changes are mostly multiplicative (light absorbed by pigment or blood), so pores and grain
show through a defect as they do on real skin, and the same defect reads correctly on light and
dark skin.

Scale: ``scale=1`` means a face about 250 px wide; acne radii are then 1.5-5 px, marks up to
6 px, blotches 10-28 px. Counts follow the skin area in units of ``(64 * scale)^2`` pixels, so
density is independent of crop size and resolution.

Exact masks: every pixel is either left bit-identical to ``clean`` or changed by at least
:data:`MIN_CHANGE` in some channel. So when ``clean`` holds uint8 values (k/255), rounding both
images to uint8 differs exactly on the returned mask (by at least :data:`MIN_LEVELS` grey
levels), and the mask covers each defect's soft falloff out to where the falloff is cut.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

DEFECT_KINDS: tuple[str, ...] = (
    "blotch", "freckles", "macule", "mark", "bruise", "scar", "acne", "pustule", "blackhead"
)  # fmt: skip

#: Smallest change, in uint8 grey levels (any channel), that a painted pixel may have. One-level
#: tails are invisible yet would make masks much larger than the visible defect, so they are
#: undone rather than marked.
MIN_LEVELS = 2

#: :data:`MIN_LEVELS` in [0, 1] units, with margin so a kept change still moves a uint8 pixel by
#: at least MIN_LEVELS after rounding (whichever way ties round).
MIN_CHANGE = (MIN_LEVELS - 0.4) / 255.0

#: Expected defects of each kind per (64 * scale)^2 pixels of skin at density 1.
BASE_RATES: dict[str, float] = {
    "acne": 0.5,
    "mark": 0.7,
    "freckles": 0.25,
    "scar": 0.15,
    "blotch": 0.25,
    "macule": 0.3,
    "bruise": 0.2,
    "pustule": 0.45,
    "blackhead": 0.3,
}

_UNIT_PX = 64.0

# Transmission spectra (R, G, B) of the pigments, at unit strength. Raising one to a random power
# varies how dense the pigment is while keeping its hue, so a brown spot never turns olive or grey.
_MELANIN = np.array([0.80, 0.63, 0.50])  # brown: marks, freckles, dark scars, tan blotches
_BLOOD = np.array([0.90, 0.58, 0.62])  # red: inflamed acne, red-brown marks, flushed blotches
_GREY = np.array([0.72, 0.74, 0.78])  # grey to bluish: scab edges, bruises, vein shadows
_BLUE = np.array([0.70, 0.74, 0.88])


def _pigment(rng: np.random.Generator, spectrum: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``spectrum`` at a random density in [lo, hi], with a slight per-defect hue jitter."""
    return np.clip(spectrum ** rng.uniform(lo, hi) * (1.0 + rng.normal(0.0, 0.015, 3)), 0.05, 1.0)


@dataclass
class _Canvas:
    """What every painter needs: the image being painted and the per-image constants."""

    img: np.ndarray  # float32 HxWx3, painted in place
    clean: np.ndarray  # float32 HxWx3, the untouched reference
    skin: np.ndarray  # float32 HxW weights in [0, 1]
    rng: np.random.Generator
    scale: float
    light: np.ndarray  # unit (x, y) vector pointing towards the light, shared by all defects
    all_skin: bool  # skin weight is 1 everywhere (textures): skip the weighting


def _window(
    c: _Canvas, cy: float, cx: float, half: float
) -> tuple[tuple[slice, slice], np.ndarray, np.ndarray] | None:
    """Slices of the window around (cy, cx) and its pixel offsets from the centre, or None."""
    h, w = c.skin.shape
    y0, y1 = max(0, int(np.floor(cy - half))), min(h, int(np.ceil(cy + half)) + 1)
    x0, x1 = max(0, int(np.floor(cx - half))), min(w, int(np.ceil(cx + half)) + 1)
    if y0 >= y1 or x0 >= x1:
        return None
    yy = (np.arange(y0, y1, dtype=np.float32) - np.float32(cy))[:, None]
    xx = (np.arange(x0, x1, dtype=np.float32) - np.float32(cx))[None, :]
    return (slice(y0, y1), slice(x0, x1)), yy, xx


def channel_max(a: np.ndarray) -> np.ndarray:
    """Maximum over the last axis of an HxWx3 array (several times faster than ``max(-1)``)."""
    return np.maximum(np.maximum(a[..., 0], a[..., 1]), a[..., 2])


def _commit(c: _Canvas, sl: tuple[slice, slice], new: np.ndarray) -> None:
    """Write ``new`` into the window, weighted by skin, keeping the exact-mask invariant."""
    old = c.img[sl]
    out = np.subtract(new, old, dtype=np.float32)
    if not c.all_skin:
        out *= c.skin[sl][..., None]
    out += old
    np.clip(out, 0.0, 1.0, out=out)
    ref = c.clean[sl]
    # Changes too small to survive uint8 rounding are undone, so "changed" is unambiguous.
    faint = channel_max(np.abs(out - ref)) < MIN_CHANGE
    np.copyto(out, ref, where=faint[..., None])
    c.img[sl] = out


def _absorb(patch: np.ndarray, alpha: np.ndarray, transmission: np.ndarray) -> np.ndarray:
    """Pigment or blood over skin: each channel scaled by transmission**alpha."""
    log_t = np.log(np.asarray(transmission, np.float32))
    return patch * np.exp(alpha[..., None] * log_t)


def _rotated(yy: np.ndarray, xx: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    ca, sa = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    return ca * xx + sa * yy, -sa * xx + ca * yy


def _papule(c: _Canvas, cy: float, cx: float) -> None:
    """One inflamed papule (see ``_paint_acne``)."""
    rng, s = c.rng, c.scale
    r = s * float(np.clip(rng.lognormal(np.log(2.75), 0.3), 1.0, 5.0))
    aspect = rng.uniform(0.75, 1.0)
    halo_k = rng.uniform(1.5, 2.5)
    win = _window(c, cy, cx, 2.2 * r * halo_k)
    if win is None:
        return
    sl, yy, xx = win
    angle = rng.uniform(0.0, np.pi)
    u, v = _rotated(yy, xx, angle)
    ry = r * aspect
    d2 = (u / r) ** 2 + (v / ry) ** 2
    dome = np.exp(-d2)
    # Measured on real papules (disc against ring, CIE Lab): a* +2.3 to +7.4 (median +3.8),
    # L* -3.3 to -10 (median -5.7), b* about +0.6: less red and relatively darker than blood
    # alone, so a near-neutral darkening (swollen, shadowed skin) goes with the blood. A
    # quarter are nearly colourless bumps, seen by their relief (the `acne` photo's forehead).
    colourless = rng.random() < 0.25
    redness = rng.uniform(0.02, 0.08) if colourless else rng.uniform(0.08, 0.3)
    alpha = redness * (dome + rng.uniform(0.1, 0.3) * np.exp(-d2 / halo_k**2))
    new = _absorb(c.img[sl], alpha, _pigment(rng, _BLOOD, 0.9, 1.5))
    new = _absorb(new, rng.uniform(0.3, 0.9) * redness * dome, _pigment(rng, _GREY, 0.8, 1.4))

    # Relief: a raised dome (or, for some, a pit) is lighter on the slope facing the light and
    # darker on the far slope; the colourless ones are seen mostly by this.
    ca, sa = float(np.cos(angle)), float(np.sin(angle))
    du = 2.0 * u / r**2
    dv = 2.0 * v / ry**2
    gx = -dome * (du * ca - dv * sa)
    gy = -dome * (du * sa + dv * ca)
    height = rng.uniform(0.15, 0.4) if colourless else rng.uniform(0.05, 0.25)
    if rng.random() < 0.2:
        height = -height
    relief = height * r * -(gx * c.light[0] + gy * c.light[1])
    new = new * (1.0 + relief[..., None])

    if rng.random() < 0.15:
        # A pale centre: the papule turning into a pustule.
        head = rng.uniform(0.3, 0.6) * np.exp(-d2 / 0.3**2)
        pale = np.clip(channel_max(new)[..., None] * np.float32([1.05, 1.0, 0.85]) + 0.04, 0, 1)
        new = new + head[..., None] * (pale - new)
    if rng.random() < 0.35:
        # A small specular glint on the lit side of the dome (skin over a papule is taut).
        oy, ox = -0.4 * r * c.light[1], -0.4 * r * c.light[0]
        glint = rng.uniform(0.04, 0.12) * np.exp(
            -((yy + oy) ** 2 + (xx + ox) ** 2) / (0.35 * r) ** 2
        )
        new = new + glint[..., None] * (1.0 - new)
    _commit(c, sl, new)


def _paint_acne(c: _Canvas, cy: float, cx: float) -> None:
    rng, s = c.rng, c.scale
    # Real papules come in groups: the nearest neighbour of a real lesion is 2.8-8.8% of the
    # face width away (median 4.5%), so a cluster spreads over a few percent of the face.
    count = 1 + min(7, int(rng.poisson(1.5)))
    spread = s * rng.uniform(4.0, 12.0)
    for dy, dx in rng.normal(0.0, spread, (count, 2)) * (np.arange(count) > 0)[:, None]:
        _papule(c, cy + dy, cx + dx)


def _paint_mark(c: _Canvas, cy: float, cx: float) -> None:
    rng, s = c.rng, c.scale
    r = s * rng.uniform(1.5, 6.0)
    aspect = rng.uniform(0.7, 1.0)
    hardness = rng.uniform(2.0, 4.0)
    harmonics = rng.uniform(0.0, 0.15, 3)
    win = _window(c, cy, cx, 1.5 * r * 5.5 ** (1.0 / hardness) / aspect)
    if win is None:
        return
    sl, yy, xx = win
    u, v = _rotated(yy, xx, rng.uniform(0.0, np.pi))
    theta = np.arctan2(v, u)
    wobble = 1.0 + sum(
        a * np.cos((k + 1) * theta + rng.uniform(0, 2 * np.pi)) for k, a in enumerate(harmonics)
    )
    d = np.sqrt(u**2 + (v / aspect) ** 2) / (r * wobble)
    alpha = rng.uniform(0.6, 1.0) * np.exp(-(d**hardness))
    if rng.random() < 0.7:
        tint = _pigment(rng, _MELANIN, 0.7, 1.5)
    else:
        tint = _pigment(rng, _MELANIN, 0.3, 0.6) * _pigment(rng, _BLOOD, 0.4, 0.8)
    _commit(c, sl, _absorb(c.img[sl], alpha, tint))


def _paint_freckles(c: _Canvas, cy: float, cx: float) -> None:
    rng, s = c.rng, c.scale
    spread = s * rng.uniform(5.0, 16.0)
    n = int(rng.integers(4, 19))
    tint = _pigment(rng, _MELANIN, 0.6, 1.1)
    offsets = np.clip(rng.normal(0.0, spread, (n, 2)), -2.5 * spread, 2.5 * spread)
    radii = np.maximum(0.7, s * rng.uniform(0.7, 1.8, n))
    # Each freckle's own depth of colour differs from its neighbours': strength times pigment.
    depth = rng.uniform(0.5, 1.0, n) * rng.uniform(0.7, 1.3, n)
    angles = rng.uniform(0.0, np.pi, n)
    win = _window(c, cy, cx, 2.5 * spread + 2.5 * float(radii.max()))
    if win is None:
        return
    sl, yy, xx = win
    # Sum the optical depth of all dots in the cluster's window, then absorb once.
    optical = np.zeros((yy.shape[0], xx.shape[1]), np.float32)
    oy, ox = int(np.floor(-yy[0, 0])), int(np.floor(-xx[0, 0]))  # window index of the centre
    for (dy, dx), r, k, a in zip(offsets, radii, depth, angles, strict=True):
        half = 2.5 * r
        y0, y1 = max(0, int(oy + dy - half)), min(optical.shape[0], int(oy + dy + half) + 2)
        x0, x1 = max(0, int(ox + dx - half)), min(optical.shape[1], int(ox + dx + half) + 2)
        if y0 >= y1 or x0 >= x1:
            continue
        u, v = _rotated(yy[y0:y1] - dy, xx[:, x0:x1] - dx, a)
        optical[y0:y1, x0:x1] += k * np.exp(-((u / r) ** 2 + (v / (0.8 * r)) ** 2))
    _commit(c, sl, _absorb(c.img[sl], optical, tint))


def _paint_scar(c: _Canvas, cy: float, cx: float) -> None:
    rng, s = c.rng, c.scale
    length = s * rng.uniform(6.0, 20.0)
    width = max(0.7, s * rng.uniform(0.8, 1.8))
    angle = rng.uniform(0.0, np.pi)
    along = np.array([np.cos(angle), np.sin(angle)])
    normal = np.array([-along[1], along[0]])
    bend = rng.uniform(-0.25, 0.25) * length
    # Quadratic Bezier through the centre region, sampled into a short polyline (x, y offsets).
    t = np.linspace(0.0, 1.0, 9)[:, None]
    p0, p1, p2 = -0.5 * length * along, bend * normal, 0.5 * length * along
    pts = ((1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2).astype(np.float32)
    win = _window(c, cy, cx, 0.5 * length + abs(bend) + 3.0 * width + 1.0)
    if win is None:
        return
    sl, yy, xx = win
    a, b = pts[:-1], pts[1:]
    ab = b - a
    px = xx[None] - a[:, 0, None, None]
    py = yy[None] - a[:, 1, None, None]
    seg_len2 = (ab**2).sum(axis=1)[:, None, None] + 1e-6
    tt = np.clip((px * ab[:, 0, None, None] + py * ab[:, 1, None, None]) / seg_len2, 0.0, 1.0)
    dist2 = (px - tt * ab[:, 0, None, None]) ** 2 + (py - tt * ab[:, 1, None, None]) ** 2
    nearest = dist2.argmin(axis=0)
    dist2 = np.take_along_axis(dist2, nearest[None], axis=0)[0]
    pos = (nearest + np.take_along_axis(tt, nearest[None], axis=0)[0]) / len(ab)
    taper = np.sqrt(np.sin(np.pi * pos))  # ends fade out instead of stopping square
    profile = np.exp(-dist2 / width**2) * taper
    alpha = rng.uniform(0.6, 1.0) * profile

    patch = c.img[sl]
    if rng.random() < 0.7:
        # Pale, pinkish, smooth scar tissue: blend towards a lighter version of the local tone.
        local = patch.reshape(-1, 3).mean(axis=0)
        tissue = np.clip(
            local * np.float32([1.16, 1.0, 1.04]) + np.float32([0.05, 0.03, 0.04]), 0, 1
        )
        new = patch + alpha[..., None] * (tissue - patch)
    else:
        new = _absorb(patch, alpha, _pigment(rng, _MELANIN, 0.6, 1.0))
    # Sunken: the slope facing away from the light is in shadow.
    gy, gx = np.gradient(profile)
    relief = rng.uniform(0.1, 0.25) * width * (gx * c.light[0] + gy * c.light[1])
    _commit(c, sl, new * (1.0 + relief[..., None]))


def _paint_blotch(c: _Canvas, cy: float, cx: float) -> None:
    rng, s = c.rng, c.scale
    radius = s * rng.uniform(10.0, 28.0)
    aspect = rng.uniform(0.6, 1.0)
    half = 1.8 * radius
    win = _window(c, cy, cx, half)
    if win is None:
        return
    sl, yy, xx = win
    u, v = _rotated(yy, xx, rng.uniform(0.0, np.pi))
    envelope = np.exp(-((u / radius) ** 2 + (v / (radius * aspect)) ** 2))
    # Coarse noise spanning the whole (unclipped) window breaks the ellipse into an irregular
    # patch; the box keeps its features the same size when the window is cut by the border.
    cells = 7
    grid = Image.fromarray(rng.standard_normal((cells, cells), dtype=np.float32))
    to_grid = cells / (2.0 * half)
    box = (
        max(0.0, float(xx[0, 0] + half) * to_grid),
        max(0.0, float(yy[0, 0] + half) * to_grid),
        min(float(cells), float(xx[0, -1] + 1.0 + half) * to_grid),
        min(float(cells), float(yy[-1, 0] + 1.0 + half) * to_grid),
    )
    hh, ww = envelope.shape
    noise = np.asarray(grid.resize((ww, hh), Image.Resampling.BICUBIC, box=box))
    field = envelope * (1.0 + 0.7 * noise)
    x = np.clip((field - 0.3) / 0.5, 0.0, 1.0)
    alpha = rng.uniform(0.5, 1.0) * x * x * (3.0 - 2.0 * x)  # smoothstep: soft, irregular edge
    spectrum = _BLOOD if rng.random() < 0.6 else _MELANIN
    _commit(c, sl, _absorb(c.img[sl], alpha, _pigment(rng, spectrum, 0.2, 0.4)))


def _irregular_disc(
    rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, r: float, aspect: float
) -> np.ndarray:
    """Distance from the centre in units of a wobbly, elongated radius r (1 on the outline)."""
    u, v = _rotated(yy, xx, rng.uniform(0.0, np.pi))
    theta = np.arctan2(v, u)
    harmonics = rng.uniform(0.0, 0.15, 3)
    wobble = 1.0 + sum(
        a * np.cos((k + 1) * theta + rng.uniform(0, 2 * np.pi)) for k, a in enumerate(harmonics)
    )
    return np.sqrt(u**2 + (v / aspect) ** 2) / (r * wobble)


def _flat_mark(
    c: _Canvas,
    cy: float,
    cx: float,
    radius: tuple[float, float],
    min_aspect: float,
    hardness: tuple[float, float],
    min_strength: float,
) -> tuple[tuple[slice, slice], np.ndarray] | None:
    """The window and alpha of a flat, irregular mark (macules, grey marks), or None."""
    rng = c.rng
    r = c.scale * rng.uniform(*radius)
    aspect = rng.uniform(min_aspect, 1.0)
    k = rng.uniform(*hardness)
    win = _window(c, cy, cx, 1.6 * r * 5.5 ** (1.0 / k) / aspect)
    if win is None:
        return None
    sl, yy, xx = win
    d = _irregular_disc(rng, yy, xx, r, aspect)
    return sl, rng.uniform(min_strength, 1.0) * np.exp(-(d**k))


def _paint_macule(c: _Canvas, cy: float, cx: float) -> None:
    mark = _flat_mark(c, cy, cx, (2.5, 9.0), 0.65, (2.0, 7.0), 0.5)
    if mark is not None:
        sl, alpha = mark
        _commit(c, sl, _absorb(c.img[sl], alpha, _pigment(c.rng, _MELANIN, 0.5, 1.8)))


def _paint_bruise(c: _Canvas, cy: float, cx: float) -> None:
    mark = _flat_mark(c, cy, cx, (1.5, 7.0), 0.6, (1.5, 5.0), 0.4)
    if mark is None:
        return
    sl, alpha = mark
    rng = c.rng
    patch = c.img[sl]
    # Desaturate towards the local grey first: these marks take colour out as well as light.
    grey = patch.mean(axis=-1, keepdims=True)
    patch = patch + rng.uniform(0.2, 0.7) * alpha[..., None] * (grey - patch)
    spectrum = _BLUE if rng.random() < 0.4 else _GREY
    _commit(c, sl, _absorb(patch, alpha, _pigment(rng, spectrum, 0.5, 1.5)))


def _paint_pustule(c: _Canvas, cy: float, cx: float) -> None:
    rng, s = c.rng, c.scale
    r = s * rng.uniform(1.2, 5.0)
    aspect = rng.uniform(0.75, 1.0)
    ring = rng.random() < 0.75
    win = _window(c, cy, cx, 2.6 * r)
    if win is None:
        return
    sl, yy, xx = win
    d = _irregular_disc(rng, yy, xx, r, aspect)
    new = c.img[sl]
    if ring:
        # As weak as a papule's redness (measured on real ones: a* +2 to +7 against the ring).
        red = rng.uniform(0.15, 0.5) * np.exp(-(d**2) / 0.8)
        new = _absorb(new, red, _pigment(rng, _BLOOD, 0.8, 1.5))
    head_r = rng.uniform(0.3, 0.6) if ring else rng.uniform(0.5, 0.9)
    sharp = rng.uniform(2.0, 5.0)
    head = rng.uniform(0.4, 0.9) * np.exp(-((d / head_r) ** sharp))
    # White to pale yellow, lighter than the skin around it whatever its tone.
    tint = np.float32([1.0, 0.97, rng.uniform(0.75, 1.0)])
    pale = np.clip(channel_max(c.img[sl])[..., None] * 1.1 * tint + 0.08, 0.0, 1.0)
    new = new + head[..., None] * (pale - new)
    _commit(c, sl, new)


def _paint_blackhead(c: _Canvas, cy: float, cx: float) -> None:
    rng, s = c.rng, c.scale
    # Usually a few together, as on the nose and chin.
    for _ in range(int(rng.integers(1, 6))):
        r = max(0.7, s * rng.uniform(0.7, 1.8))
        oy, ox = rng.normal(0.0, 3.0 * s, 2)
        win = _window(c, cy + oy, cx + ox, 3.0 * r)
        if win is None:
            continue
        sl, yy, xx = win
        d = _irregular_disc(rng, yy, xx, r, rng.uniform(0.7, 1.0))
        alpha = rng.uniform(0.6, 1.0) * np.exp(-(d ** rng.uniform(2.0, 4.0)))
        dark = _pigment(rng, _MELANIN, 1.5, 3.0) * _pigment(rng, _GREY, 0.5, 1.5)
        _commit(c, sl, _absorb(c.img[sl], alpha, dark))


_PAINTERS: dict[str, Callable[[_Canvas, float, float], None]] = {
    "acne": _paint_acne,
    "mark": _paint_mark,
    "freckles": _paint_freckles,
    "scar": _paint_scar,
    "blotch": _paint_blotch,
    "macule": _paint_macule,
    "bruise": _paint_bruise,
    "pustule": _paint_pustule,
    "blackhead": _paint_blackhead,
}


def paint_blemishes(
    clean: np.ndarray,
    skin: np.ndarray,
    rng: np.random.Generator,
    scale: float = 1.0,
    density: float = 1.0,
    kinds: Sequence[str] | None = None,
    min_defects: int = 1,
    prefer: np.ndarray | None = None,
    prefer_share: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Paint random defects on the skin of ``clean``; return ``(defective, mask)``.

    Args:
        clean: float32 HxWx3 in [0, 1]. For the uint8 guarantee below its values should be
            multiples of 1/255 (any uint8 image divided by 255).
        skin: HxW bool or float weights in [0, 1]. Defects are centred where ``skin >= 0.75``
            and every change is weighted by ``skin``, so nothing changes where it is 0.
        rng: the only source of randomness; the same generator state gives the same result.
        scale: defect size in pixels relative to a face about 250 px wide.
        density: multiplies the expected count of every kind (:data:`BASE_RATES`). The mix of
            kinds also varies per call, so some images are mostly acne, others mostly freckles.
        kinds: restrict to these kinds (default: all of :data:`DEFECT_KINDS`).
        min_defects: paint at least this many defects when there is skin to paint on.
        prefer: HxW bool, places some defects should sit on (creases, see
            ``training.data.face_samples.creases``); each defect is centred on one of them
            (where there is skin to paint) with probability ``prefer_share``.

    Returns:
        ``defective``: float32 HxWx3 in [0, 1]; ``mask``: bool HxW, True exactly where
        ``defective != clean`` in some channel. Each changed pixel differs by at least
        :data:`MIN_CHANGE`, so with uint8-valued ``clean`` the mask is also exactly where the
        two images differ after rounding to uint8.
    """
    chosen = tuple(DEFECT_KINDS if kinds is None else kinds)
    unknown = set(chosen) - set(_PAINTERS)
    if unknown:
        raise ValueError(f"unknown defect kinds {sorted(unknown)}; choose from {DEFECT_KINDS}")
    clean = np.asarray(clean, np.float32)
    if clean.ndim != 3 or clean.shape[2] != 3:
        raise ValueError(f"clean must be HxWx3, got shape {clean.shape}")
    weights = np.clip(np.asarray(skin, np.float32), 0.0, 1.0)
    if weights.shape != clean.shape[:2]:
        raise ValueError(f"skin shape {weights.shape} does not match image {clean.shape[:2]}")

    img = clean.copy()
    centres = np.flatnonzero(weights >= 0.75)
    preferred = (
        np.flatnonzero((weights >= 0.75) & prefer) if prefer is not None else np.zeros(0, int)
    )
    if centres.size == 0 or not chosen:
        return img, np.zeros(weights.shape, bool)

    # Lit mostly from above, as in most portraits; one direction for the whole image.
    angle = -np.pi / 2 + rng.normal(0.0, 0.8)
    canvas = _Canvas(
        img=img,
        clean=clean,
        skin=weights,
        rng=rng,
        scale=float(scale),
        light=np.array([np.cos(angle), np.sin(angle)], np.float32),
        all_skin=bool(weights.min() >= 1.0),
    )
    units = float(weights.sum()) / (_UNIT_PX * scale) ** 2
    mix = rng.lognormal(0.0, 0.6, len(chosen))
    counts = rng.poisson(density * units * mix * np.array([BASE_RATES[k] for k in chosen]))
    if counts.sum() < min_defects:
        extra = rng.choice(len(chosen), min_defects - int(counts.sum()))
        np.add.at(counts, extra, 1)

    width = weights.shape[1]
    # Paint in DEFECT_KINDS order so tone patches lie under spots, as on real skin.
    for kind in DEFECT_KINDS:
        if kind not in chosen:
            continue
        for _ in range(int(counts[chosen.index(kind)])):
            # The extra draw only when there is somewhere preferred: without it the same
            # generator state paints exactly what it did before the option existed.
            pool = preferred if preferred.size and rng.random() < prefer_share else centres
            flat = int(pool[rng.integers(pool.size)])
            cy, cx = divmod(flat, width)
            jy, jx = rng.uniform(-0.5, 0.5, 2)
            _PAINTERS[kind](canvas, cy + jy, cx + jx)
    return img, channel_max(np.abs(img - clean)) > 0


def quantise(image: np.ndarray) -> np.ndarray:
    """Round a float image in [0, 1] to uint8."""
    return np.clip(np.rint(np.asarray(image, np.float32) * 255.0), 0, 255).astype(np.uint8)


def change_weight(
    clean: np.ndarray, defective: np.ndarray, full_at: float = 12 / 255
) -> np.ndarray:
    """Soft importance map (float32 HxW in [0, 1]): how strongly each pixel was changed.

    The largest per-channel change divided by ``full_at`` and clipped to 1; useful to weight a
    reconstruction loss towards the visible part of each defect. Zero wherever nothing changed.
    """
    diff = channel_max(np.abs(np.asarray(defective, np.float32) - np.asarray(clean, np.float32)))
    return np.clip(diff / full_at, 0.0, 1.0).astype(np.float32)
