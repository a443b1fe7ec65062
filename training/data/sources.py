"""Clean training sources: the two portraits that ship offline and procedural skin textures.

Real portraits
    scikit-image's ``astronaut`` (512x512) and matplotlib's ``grace_hopper.jpg`` (512x600) are the
    only photos of people available offline. Each gets a skin mask from a colour rule restricted to
    a hand-placed face/neck prior (the rule alone also fires on the astronaut's hair and the pinkish
    studio backdrop).

Train/eval split
    Each portrait is cut by a vertical line a little right of the face's centre: columns left of
    ``split_x`` are the training region, columns from ``split_x`` on are the evaluation region.
    The two regions are cut apart *before* any resampling, so no training crop can contain (or be
    interpolated from) a single evaluation pixel. The evaluation side holds about 40% of each face.

Procedural textures
    :func:`skin_texture` synthesises an all-skin patch: a tone from light to dark, low-frequency
    tone and redness variation, broad shading, pores, micro relief and sensor noise. Every call
    with a fresh generator gives a new texture, so training and evaluation textures are kept apart
    simply by drawing them from independent seed streams (see ``training.data.dataset``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image
from scipy import ndimage

Split = Literal["train", "eval"]

#: Defect scale 1.0 means a face about this many pixels wide (see ``training.data.blemishes``).
FACE_WIDTH_AT_SCALE_1 = 250.0

#: Skin tones in sRGB [0, 1], ordered light to dark. Hand-picked to span very fair to deep
#: skin; :func:`sample_skin_tone` interpolates between neighbours, so the palette is a continuum.
SKIN_TONES = np.array(
    [
        [0.96, 0.86, 0.79],
        [0.93, 0.80, 0.70],
        [0.90, 0.75, 0.63],
        [0.85, 0.67, 0.53],
        [0.77, 0.58, 0.44],
        [0.67, 0.48, 0.35],
        [0.56, 0.39, 0.28],
        [0.45, 0.31, 0.22],
        [0.35, 0.24, 0.18],
        [0.27, 0.19, 0.15],
    ],
    dtype=np.float32,
)


def sample_skin_tone(rng: np.random.Generator) -> np.ndarray:
    """Draw one skin tone (sRGB float32 ``(3,)`` in [0, 1]) from the light-to-dark continuum.

    Small independent red/blue jitter gives warmer, cooler and more olive variants of each tone.
    """
    t = rng.uniform(0.0, len(SKIN_TONES) - 1)
    i = min(int(t), len(SKIN_TONES) - 2)
    f = t - i
    tone = (1.0 - f) * SKIN_TONES[i] + f * SKIN_TONES[i + 1]
    tone = tone * (1.0 + rng.normal(0.0, 0.015, 3) * np.array([1.0, 0.3, 1.0]))
    return np.clip(tone, 0.05, 0.98).astype(np.float32)


def _ycbcr(image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = image.astype(np.float32)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = 128.0 - 0.168736 * r - 0.331264 * g + 0.5 * b
    cr = 128.0 + 0.5 * r - 0.418688 * g - 0.081312 * b
    return y, cb, cr


def detect_skin(image: np.ndarray, prior: np.ndarray | None = None) -> np.ndarray:
    """Soft skin mask (float32 HxW in [0, 1]) of a uint8 RGB image.

    A broad YCbCr box rule (wide in Cr for ruddy, older skin) picks candidates. With a ``prior``
    (bool HxW: where skin can be, e.g. a face ellipse) the rule is then tightened to this
    person's own skin colour: chroma within a few robust deviations of the median inside the
    prior, and luminance not far below it, which removes eyes, brows, teeth, lips and nostrils
    that the generic box lets through. An opening drops isolated hits and a small closing
    bridges pores and specular flecks. The soft edge lies *inside* the hard mask, so anything
    weighted by it stays on detected skin.
    """
    y, cb, cr = _ycbcr(image)
    hard = (cr >= 136) & (cr <= 186) & (cb >= 78) & (cb <= 126) & (y >= 45) & (y <= 250)
    if prior is not None:
        hard &= prior
        if hard.sum() > 100:
            dist = np.zeros(y.shape, np.float32)
            for ch in (cb, cr):
                med = np.median(ch[hard])
                spread = 1.4826 * np.median(np.abs(ch[hard] - med)) + 1.0
                dist += ((ch - med) / spread) ** 2
            hard &= (dist <= 3.0**2) & (y >= 0.55 * np.median(y[hard]))
    hard = ndimage.binary_opening(hard, structure=np.ones((3, 3), bool))
    hard = ndimage.binary_closing(hard, structure=np.ones((3, 3), bool), border_value=0)
    # Keep only reasonably large components: stray hits on fabric or hair are small.
    labels, n = ndimage.label(hard)
    if n:
        sizes = ndimage.sum_labels(hard, labels, index=np.arange(1, n + 1))
        hard = np.isin(labels, 1 + np.flatnonzero(sizes >= 200))
    soft = ndimage.gaussian_filter(hard.astype(np.float32), 1.2)
    soft = np.clip((soft - 0.5) / 0.4, 0.0, 1.0)
    return (soft * hard).astype(np.float32)


def _ellipses(shape: tuple[int, int], ellipses: tuple[tuple[float, ...], ...]) -> np.ndarray:
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    out = np.zeros(shape, bool)
    for cx, cy, rx, ry in ellipses:
        out |= ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1.0
    return out


@dataclass(frozen=True)
class Portrait:
    """A shipped photo with its skin mask and where it is split into train and eval parts."""

    name: str
    image: np.ndarray  # uint8 HxWx3
    skin: np.ndarray  # float32 HxW in [0, 1]
    defect_scale: float  # blemish scale at native resolution (face width / 250 px)
    split_x: int  # columns < split_x: training; columns >= split_x: evaluation


@dataclass(frozen=True)
class Region:
    """One side of a split portrait: the pixels a crop may be cut from."""

    name: str
    split: Split
    image: np.ndarray  # uint8 HxWx3, C-contiguous copy of the portrait's columns
    skin: np.ndarray  # float32 HxW
    defect_scale: float
    x_offset: int  # column of this region's first pixel in the full portrait


# Face/neck priors (cx, cy, rx, ry) and split columns, placed by eye on the two photos. The face
# widths (cheek to cheek, about 105 px and 200 px) set each portrait's native defect scale.
_PORTRAIT_SPECS = {
    "astronaut": {
        "ellipses": ((229.0, 131.0, 50.0, 52.0), (228.0, 180.0, 30.0, 13.0)),
        "face_width": 105.0,
        "split_x": 240,
    },
    "grace_hopper": {
        "ellipses": ((263.0, 243.0, 96.0, 103.0), (268.0, 362.0, 52.0, 45.0)),
        "face_width": 200.0,
        "split_x": 280,
    },
}


def _load_rgb(name: str) -> np.ndarray:
    if name == "astronaut":
        from skimage import data

        return np.ascontiguousarray(data.astronaut()[..., :3])
    if name == "grace_hopper":
        from matplotlib import cbook

        with cbook.get_sample_data("grace_hopper.jpg") as f, Image.open(f) as im:
            return np.asarray(im.convert("RGB"))
    raise KeyError(name)


@functools.cache
def load_portraits() -> tuple[Portrait, ...]:
    """The shipped portraits with skin masks (loaded once, then cached)."""
    out = []
    for name, spec in _PORTRAIT_SPECS.items():
        image = _load_rgb(name)
        image.setflags(write=False)
        skin = detect_skin(image, _ellipses(image.shape[:2], spec["ellipses"]))
        skin.setflags(write=False)
        out.append(
            Portrait(
                name=name,
                image=image,
                skin=skin,
                defect_scale=spec["face_width"] / FACE_WIDTH_AT_SCALE_1,
                split_x=int(spec["split_x"]),
            )
        )
    return tuple(out)


@functools.cache
def portrait_regions(split: Split) -> tuple[Region, ...]:
    """The training or evaluation side of every portrait (disjoint by construction)."""
    if split not in ("train", "eval"):
        raise ValueError(f"split must be 'train' or 'eval', not {split!r}")
    regions = []
    for p in load_portraits():
        cols = slice(0, p.split_x) if split == "train" else slice(p.split_x, None)
        image = np.ascontiguousarray(p.image[:, cols])
        skin = np.ascontiguousarray(p.skin[:, cols])
        image.setflags(write=False)
        skin.setflags(write=False)
        regions.append(
            Region(
                name=p.name,
                split=split,
                image=image,
                skin=skin,
                defect_scale=p.defect_scale,
                x_offset=0 if split == "train" else p.split_x,
            )
        )
    return tuple(regions)


def _smooth_noise(h: int, w: int, cell: float, rng: np.random.Generator) -> np.ndarray:
    """Zero-mean, roughly unit-variance noise with features about ``cell`` pixels across."""
    cell = max(float(cell), 2.0)
    gh, gw = int(np.ceil(h / cell)) + 4, int(np.ceil(w / cell)) + 4
    grid = Image.fromarray(rng.standard_normal((gh, gw), dtype=np.float32))
    # Bicubic interpolation of a random grid over a box with a random sub-cell offset, so
    # features do not line up with the pixel grid the same way in every texture.
    oy, ox = rng.uniform(1.0, 2.0, 2)
    box = (ox, oy, ox + w / cell, oy + h / cell)
    return np.asarray(grid.resize((w, h), Image.Resampling.BICUBIC, box=box))


@functools.cache
def _noise_bank() -> np.ndarray:
    # Drawing fresh Gaussian noise costs more than the rest of a texture; random windows of one
    # fixed bank, flipped at random, are statistically just as good for grain and sensor noise.
    bank = np.random.default_rng(0x5EED).standard_normal((640, 640, 3), dtype=np.float32)
    bank.setflags(write=False)
    return bank


def _noise(h: int, w: int, channels: int, rng: np.random.Generator) -> np.ndarray:
    """Unit Gaussian noise of shape (h, w, channels) (a view when it fits the bank)."""
    bank = _noise_bank()
    if h > bank.shape[0] or w > bank.shape[1] or channels > bank.shape[2]:
        return rng.standard_normal((h, w, channels), dtype=np.float32)
    y = int(rng.integers(0, bank.shape[0] - h + 1))
    x = int(rng.integers(0, bank.shape[1] - w + 1))
    c = int(rng.integers(0, bank.shape[2] - channels + 1))
    sy, sx = (1 if f else -1 for f in rng.random(2) < 0.5)
    return bank[y : y + h, x : x + w, c : c + channels][::sy, ::sx]


def skin_texture(
    height: int,
    width: int,
    rng: np.random.Generator,
    scale: float = 1.0,
    tone: np.ndarray | None = None,
) -> np.ndarray:
    """A procedural patch of skin, float32 ``height x width x 3`` in [0, 1].

    ``scale`` has the blemish synthesiser's meaning (1.0: a face about 250 px wide), so pores and
    tone variation grow with it. ``tone`` (sRGB ``(3,)``) defaults to :func:`sample_skin_tone`.
    """
    h, w = int(height), int(width)
    s = float(scale)
    base = sample_skin_tone(rng) if tone is None else np.asarray(tone, np.float32)

    # Low-frequency luminance and redness variation: the uneven-but-healthy look of real skin.
    lum = 0.045 * _smooth_noise(h, w, 70 * s, rng) + 0.025 * _smooth_noise(h, w, 25 * s, rng)
    # Redness only ever adds (flushed patches); negative redness would read as a green cast.
    red = np.float32(rng.uniform(0.005, 0.02)) * np.maximum(_smooth_noise(h, w, 60 * s, rng), 0.0)
    # Broad illumination: a tilt plus a curvature, as on a cheek or forehead.
    yy = (np.arange(h, dtype=np.float32)[:, None] - h / 2) / max(h, w)
    xx = (np.arange(w, dtype=np.float32)[None, :] - w / 2) / max(h, w)
    angle = rng.uniform(0, 2 * np.pi)
    tilt = rng.uniform(-0.2, 0.2) * (float(np.cos(angle)) * xx + float(np.sin(angle)) * yy)
    cy, cx = (float(v) for v in rng.uniform(-0.5, 0.5, 2))
    bulge = -rng.uniform(0.0, 0.35) * ((xx - cx) ** 2 + (yy - cy) ** 2)

    # Pores: small dark dots a few pixels apart (at scale 1), slightly more saturated than skin.
    sigma = max(0.45, 0.55 * s)
    spacing = rng.uniform(4.0, 8.0) * s
    n_pores = int(h * w / max(spacing**2, 4.0))
    where = rng.integers(0, h * w, n_pores)
    depth = rng.uniform(0.015, 0.06, n_pores)
    pores = np.bincount(where, weights=depth, minlength=h * w).astype(np.float32).reshape(h, w)
    pores = ndimage.gaussian_filter(pores, sigma) * np.float32(2 * np.pi * sigma**2)
    # Micro relief: fine band-limited noise that reads as skin grain rather than sensor noise.
    relief = ndimage.gaussian_filter(_noise(h, w, 1, rng)[..., 0], 0.7 * s)
    relief *= np.float32(rng.uniform(0.01, 0.03) / max(float(relief.std()), 1e-6))

    shade = 1.0 + lum + tilt + bulge + relief - pores
    cool = (1.0 - 0.6 * red) * (1.0 - 0.3 * pores)
    img = np.stack(
        [base[0] * shade * (1.0 + red), base[1] * shade * cool, base[2] * shade * cool], -1
    )

    # Occasional sheen: oily highlights lift values towards white.
    if rng.random() < 0.4:
        sheen = np.clip(_smooth_noise(h, w, 90 * s, rng) - 0.3, 0.0, 1.0) * rng.uniform(0.03, 0.1)
        img += sheen[..., None] * (1.0 - img)

    img += np.float32(rng.uniform(0.002, 0.01)) * _noise(h, w, 3, rng)
    return np.clip(img, 0.0, 1.0, out=img)
