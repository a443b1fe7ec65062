"""Training samples from real face regions, at the scales the LRL sees them.

The engine hands the LRL each face region shrunk to at most ``lrl_size`` on its long side, so a
face reaches the LRL between its own width (small faces, never upscaled) and about
``lrl_size * face / region`` pixels wide, whatever the photo's resolution. Each sample:

1. picks a face region and a *photo resolution*: the face ``u`` times its source width
   (0.8x to 5x: the same face in a small JPEG and in an upscaled 4K or 8K photo);
2. cuts a window around a skin pixel (or, for a hard negative, around a protected pixel: eyes,
   lips, brows, hair, beard, clothes, background), resamples it to that resolution, jitters its
   colour and paints defects on the skin there (painted at photo scale, so their edges are as
   sharp as the photo's);
3. box-downsamples the pair to the LRL's scale, exactly as the engine does, and rounds it.

With ``p_crease``, that share of the defects is centred on a crease (:func:`creases`): real
spots sit in the nasolabial fold and the chin's crease too, and the target there is the spot
alone, so the mask loss charges a mask that spreads over the crease's shadow.

Hard negatives and photos without faces have an empty target (input equals target), so the
network learns to leave eyes, lips, hair, clothes and backgrounds alone even before the skin gate.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import ndimage

from .blemishes import paint_blemishes
from .dataset import (
    Batch,
    Sample,
    _colour_jitter_uint8,
    _finish,
    _log_uniform,
    collate,
    draw_sample,
)
from .face_crops import FaceCrop, negative_photos, training_faces

FACE_AT_SCALE_ONE = 250.0
"""Face width (pixels) at which the blemish painter's ``scale`` is 1."""
MAX_UPSAMPLE = 5.0
"""Painting resolution over LRL resolution, at most: beyond, box-averaging changes little."""


def _resample(image: np.ndarray, side: int) -> np.ndarray:
    """uint8 square window -> float32 side x side in [0, 1]: bicubic up, box down."""
    if image.shape[0] == side:
        return image.astype(np.float32) / 255.0
    pil = Image.fromarray(image)
    up = side > image.shape[0]
    out = pil.resize((side, side), Image.Resampling.BICUBIC if up else Image.Resampling.BOX)
    return np.asarray(out).astype(np.float32) / 255.0


def _resample_mask(mask: np.ndarray, side: int) -> np.ndarray:
    pil = Image.fromarray(mask.astype(np.float32), mode="F")
    return np.asarray(pil.resize((side, side), Image.Resampling.BILINEAR))


def _box_down(images: list[np.ndarray], size: int) -> list[np.ndarray]:
    """Area-average float HxWxC images to size x size (what the engine's Pillow BOX does)."""
    t = torch.from_numpy(np.concatenate(images, axis=-1)).permute(2, 0, 1)[None]
    out = F.interpolate(t, size=(size, size), mode="area")[0].permute(1, 2, 0).numpy()
    splits = np.cumsum([im.shape[-1] for im in images])[:-1]
    return [np.ascontiguousarray(a) for a in np.split(out, splits, axis=-1)]


CREASE_WIDTH = 0.04
"""Widest dark line (fraction of the face's width) that :func:`creases` finds."""
CREASE_DEPTH = 0.09
"""How much darker than its surroundings (luma, 0-1) a crease must be."""


def creases(image: np.ndarray, face_width: float) -> np.ndarray:
    """HxW bool: dark lines and dents of ``image`` (float HxWx3 in [0, 1]) narrower than
    ``CREASE_WIDTH`` of ``face_width`` pixels, at least ``CREASE_DEPTH`` below the skin
    around them (a black top-hat of the luma)."""
    luma = image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    size = max(3, 2 * round(CREASE_WIDTH * face_width / 2) + 1)
    return ndimage.grey_closing(luma, size=(size, size)) - luma > CREASE_DEPTH


def _window_origin(rng: np.random.Generator, centre: int, side: int, extent: int) -> int:
    return int(np.clip(centre - rng.uniform(0.25, 0.75) * side, 0, max(0, extent - side)))


def face_sample(
    rng: np.random.Generator,
    size: int,
    crops: tuple[FaceCrop, ...],
    *,
    lrl_size: int,
    p_hard_negative: float = 0.2,
    p_clean: float = 0.08,
    density_range: tuple[float, float] = (0.4, 2.0),
    p_crease: float = 0.0,
) -> Sample:
    """One ``size x size`` sample at LRL scale from a real face region (see the module doc)."""
    areas = np.array([c.skin_area for c in crops], np.float64)
    crop = crops[int(rng.choice(len(crops), p=areas / areas.sum()))]
    h, w = crop.skin.shape
    # The engine's zoom for this region, and how wide the face then is at the LRL.
    # The photo is the source at u times its size; the engine shrinks the region to the LRL's
    # working size, and defects are painted at most MAX_UPSAMPLE times finer than that.
    u = _log_uniform(rng, 0.8, MAX_UPSAMPLE)
    zoom = min(1.0, lrl_size / (max(h, w) * u))
    face_lrl = crop.face_width * u * zoom
    paint_zoom = max(zoom, 1.0 / MAX_UPSAMPLE)
    paint_u = face_lrl / paint_zoom / crop.face_width
    side_src = min(h, w, max(8, round(size / paint_zoom / paint_u)))
    side_photo = max(size, round(side_src * paint_u))

    hard = rng.random() < p_hard_negative
    candidates = np.flatnonzero(crop.skin < 0.05 if hard else crop.skin >= 0.75)
    if candidates.size == 0:
        candidates = np.arange(h * w)
    cy, cx = divmod(int(candidates[rng.integers(candidates.size)]), w)
    y0, x0 = _window_origin(rng, cy, side_src, h), _window_origin(rng, cx, side_src, w)
    window = crop.image[y0 : y0 + side_src, x0 : x0 + side_src]
    skin = crop.skin[y0 : y0 + side_src, x0 : x0 + side_src]

    jittered = _colour_jitter_uint8(window, rng, crop.mean_skin)
    clean = _resample(np.clip(np.rint(jittered * 255), 0, 255).astype(np.uint8), side_photo)
    skin_photo = _resample_mask(skin, side_photo)
    if hard or rng.random() < p_clean:
        painted = clean
    else:
        density = _log_uniform(rng, *density_range)
        scale = crop.face_width * paint_u / FACE_AT_SCALE_ONE
        prefer = creases(clean, crop.face_width * paint_u) if p_crease > 0 else None
        painted, _ = paint_blemishes(
            clean,
            skin_photo,
            rng,
            scale=scale,
            density=density,
            prefer=prefer,
            prefer_share=p_crease,
        )
    clean, painted = _box_down([clean, painted], size)
    inp, target, mask, weight = _finish(clean, painted, rng, any_flip=False)
    box = (x0, y0, x0 + side_src, y0 + side_src)
    return Sample(inp, target, mask, weight, crop.name, face_lrl / FACE_AT_SCALE_ONE, box)


def negative_sample(rng: np.random.Generator, size: int) -> Sample:
    """A crop of a photo without faces at a random scale; input and target are the same."""
    photos = negative_photos()
    photo = photos[int(rng.integers(len(photos)))]
    h, w = photo.shape[:2]
    side = min(h, w, max(size // 2, round(size * _log_uniform(rng, 0.5, 4.0))))
    y0, x0 = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    window = _resample(photo[y0 : y0 + side, x0 : x0 + side], max(side, size))
    (clean,) = _box_down([window], size) if window.shape[0] != size else (window,)
    inp, target, mask, weight = _finish(clean, clean, rng, any_flip=True)
    return Sample(inp, target, mask, weight, "negative", 1.0, (x0, y0, x0 + side, y0 + side))


class MixedSampler:
    """Seeded, endless training batches: real face regions (most), photos without faces, and
    the original synthetic mix (portrait halves and procedural skin textures)."""

    def __init__(
        self,
        seed: int,
        crop_size: int,
        lrl_size: int,
        *,
        p_faces: float = 0.65,
        p_negative: float = 0.07,
        p_clean_skin: float = 0.08,
        p_crease: float = 0.0,
    ) -> None:
        self.crop_size = int(crop_size)
        self.p_crease = p_crease
        self.lrl_size = int(lrl_size)
        self.p_faces = p_faces
        self.p_negative = p_negative
        self.p_clean_skin = p_clean_skin
        self.rng = np.random.default_rng([int(seed), 0xFACE])
        self.crops = training_faces()

    def sample(self) -> Sample:
        """The next uint8 training sample."""
        roll = self.rng.random()
        if roll < self.p_faces:
            return face_sample(
                self.rng,
                self.crop_size,
                self.crops,
                lrl_size=self.lrl_size,
                p_clean=self.p_clean_skin,
                p_crease=self.p_crease,
            )
        if roll < self.p_faces + self.p_negative:
            return negative_sample(self.rng, self.crop_size)
        return draw_sample(self.rng, self.crop_size, split="train", p_clean=0.1)

    def batch(self, batch_size: int) -> Batch:
        """The next batch of ``batch_size`` samples as tensors (a ``dataset.Batch``)."""
        return collate([self.sample() for _ in range(batch_size)])
