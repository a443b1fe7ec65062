"""The independent evaluation painter: exact masks, placement, scale, looks and cost."""

from __future__ import annotations

import math
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from evaluation.evalpaint import KINDS, PaintedFace, paint_face
from evaluation.evalpaint.colour import srgb_to_lab
from evaluation.evalpaint.painter import FULL_SKIN, _paint_one

LIGHT_SKIN = (222, 176, 156)
DARK_SKIN = (112, 74, 56)
# Grace Hopper (matplotlib's 512x600 sample photo): her face, as an ellipse, and its width.
GRACE_FACE = (260.0, 245.0, 85.0, 97.0)  # centre x, centre y, semi-axes x, y
GRACE_FACE_WIDTH = 190.0


def rng(seed: int) -> np.random.Generator:
    """A fresh generator for `seed`."""
    return np.random.default_rng(seed)


def box_blur(a: np.ndarray, radius: int) -> np.ndarray:
    """Mean over a (2 radius + 1)^2 square (edges replicated), over the first two axes."""
    out = a.astype(np.float64)
    for axis in (0, 1):
        pad = [(0, 0)] * out.ndim
        pad[axis] = (radius + 1, radius)
        sums = np.cumsum(np.pad(out, pad, mode="edge"), axis=axis)
        n = out.shape[axis]
        upper = np.take(sums, range(2 * radius + 1, 2 * radius + 1 + n), axis=axis)
        lower = np.take(sums, range(n), axis=axis)
        out = (upper - lower) / (2 * radius + 1)
    return out


def skin_patch(rgb: tuple[int, int, int], size: int = 256, seed: int = 0) -> np.ndarray:
    """A square of skin of the given colour with pore-like fine texture."""
    noise = rng(seed).normal(size=(size, size))
    pores = box_blur(noise, 1)
    pores = (pores - pores.mean()) / pores.std()
    shade = 1.0 + 0.035 * pores
    return np.clip(np.rint(np.array(rgb) * shade[..., None]), 0, 255).astype(np.uint8)


def ellipse_skin(
    shape: tuple[int, int], face: tuple[float, float, float, float], soft: float = 0.15
) -> np.ndarray:
    """Skin mask: 1 inside the ellipse, falling to 0 over its outer `soft` fraction."""
    cx, cy, rx, ry = face
    y, x = np.ogrid[: shape[0], : shape[1]]
    e = ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2
    return np.clip((1.0 - e) / soft, 0.0, 1.0).astype(np.float32)


@pytest.fixture(scope="module")
def grace() -> np.ndarray:
    matplotlib = pytest.importorskip("matplotlib")
    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    return np.asarray(Image.open(path).convert("RGB"))


def upscaled(image: np.ndarray, factor: int) -> np.ndarray:
    """`image` enlarged `factor` times (bicubic), as a higher-resolution photo of the same face."""
    h, w = image.shape[:2]
    return np.asarray(Image.fromarray(image).resize((w * factor, h * factor), Image.BICUBIC))


def scaled_face(factor: float) -> tuple[float, float, float, float]:
    """Grace's face ellipse in a photo `factor` times larger."""
    # Pixel centres: x_big + 0.5 = factor * (x_small + 0.5).
    cx, cy, rx, ry = GRACE_FACE
    return (factor * (cx + 0.5) - 0.5, factor * (cy + 0.5) - 0.5, factor * rx, factor * ry)


def single_defects(
    kind: str, clean: np.ndarray, face_width: float, wanted: int
) -> list[tuple[int, PaintedFace]]:
    """`wanted` (seed, painting) with one defect of `kind` on `clean` (all skin), seeds 0, 1..."""
    skin = np.ones(clean.shape[:2], dtype=bool)
    found = []
    for seed in range(3000):
        painted = paint_face(clean, skin, face_width, rng(seed), count=1)
        if painted.kinds == (kind,):
            found.append((seed, painted))
            if len(found) == wanted:
                return found
    raise AssertionError(f"only {len(found)} {kind} in 3000 draws")


def lab_change(clean: np.ndarray, painted: PaintedFace) -> np.ndarray:
    """Mean (dL, da, db) of a painting over its mask."""
    m = painted.mask
    return (srgb_to_lab(painted.image[m]) - srgb_to_lab(clean[m])).mean(axis=0)


def rings(mask: np.ndarray) -> tuple[np.ndarray, float]:
    """Distance of each pixel from the mask's centroid, and the mask's equivalent radius."""
    ys, xs = np.nonzero(mask)
    y, x = np.ogrid[: mask.shape[0], : mask.shape[1]]
    return np.hypot(y - ys.mean(), x - xs.mean()), math.sqrt(len(ys) / math.pi)


def luma(image: np.ndarray) -> np.ndarray:
    """Rec. 601 luma of an RGB image, float."""
    return image.astype(np.float64) @ np.array([0.299, 0.587, 0.114])


# --- exactness and placement -------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_mask_is_exactly_where_the_image_changed(grace: np.ndarray, seed: int) -> None:
    skin = ellipse_skin(grace.shape[:2], GRACE_FACE)
    painted = paint_face(grace, skin, GRACE_FACE_WIDTH, rng(seed))
    assert painted.image.shape == grace.shape and painted.image.dtype == np.uint8
    assert painted.mask.shape == grace.shape[:2] and painted.mask.dtype == bool
    assert painted.mask.any()
    np.testing.assert_array_equal(painted.mask, (painted.image != grace).any(axis=-1))


def test_every_change_is_at_least_two_levels(grace: np.ndarray) -> None:
    skin = ellipse_skin(grace.shape[:2], GRACE_FACE)
    for seed in range(6):
        painted = paint_face(grace, skin, GRACE_FACE_WIDTH, rng(seed))
        change = np.abs(painted.image.astype(int) - grace).max(axis=-1)
        assert change[painted.mask].min() >= 2


def test_input_is_not_modified(grace: np.ndarray) -> None:
    before = grace.copy()
    skin = ellipse_skin(grace.shape[:2], GRACE_FACE)
    paint_face(grace, skin, GRACE_FACE_WIDTH, rng(0))
    np.testing.assert_array_equal(grace, before)


@pytest.mark.parametrize("as_bool", [False, True])
def test_nothing_changes_off_skin_and_defects_keep_clear_of_its_edge(
    grace: np.ndarray, as_bool: bool
) -> None:
    skin = ellipse_skin(grace.shape[:2], GRACE_FACE, soft=0.4)
    skin[200:230, 200:320] = 0.0  # a hole (say, the glasses) inside the face
    if as_bool:
        skin = skin >= 0.7
    for seed in range(10):
        painted = paint_face(grace, skin, GRACE_FACE_WIDTH, rng(seed))
        assert painted.kinds
        off = skin < 0.5
        np.testing.assert_array_equal(painted.image[off], grace[off])
        # Defects sit well inside: they never reach even the soft edge of the skin.
        assert (skin[painted.mask] >= FULL_SKIN).all()


def test_skin_weight_fades_a_defect_out_where_it_crosses_soft_or_no_skin() -> None:
    """Placement keeps defects on sure skin; the skin weight is the second guard. A defect
    painted straight over a soft band and a hole changes nothing in the hole, less in the band."""
    clean = skin_patch(LIGHT_SKIN, size=128)
    blemish = KINDS["brown_macule"][0](rng(0), 20.0, 1.0, (0.0, -1.0))
    skin = np.ones((128, 128), dtype=np.float32)
    skin[:, 56:64] = 0.75
    skin[:, 64:] = 0.3
    paintings = []
    for mask_of_skin in (np.ones_like(skin), skin):
        image, mask = clean.copy(), np.zeros(skin.shape, dtype=bool)
        _paint_one(image, mask, clean, mask_of_skin, blemish, (64.0, 64.0))
        np.testing.assert_array_equal(mask, (image != clean).any(axis=-1))
        paintings.append(image.astype(int) - clean)
    free, clipped = paintings
    assert np.abs(free[:, 64:]).max() > 20
    assert not clipped[:, 64:].any()
    band = np.abs(clipped[:, 56:64]).mean()
    assert 0.3 * np.abs(free[:, 56:64]).mean() < band < 0.7 * np.abs(free[:, 56:64]).mean()
    # On sure skin it is the same defect (up to rounding: the local mean colour moved a little).
    assert np.abs(clipped[:, :56] - free[:, :56]).max() <= 2


def test_no_room_means_no_defects(grace: np.ndarray) -> None:
    speckled = np.zeros(grace.shape[:2], dtype=np.float32)
    speckled[::4, ::4] = 1.0  # skin nowhere wider than a pixel
    painted = paint_face(grace, speckled, GRACE_FACE_WIDTH, rng(0), count=5)
    assert painted.kinds == ()
    assert not painted.mask.any()
    np.testing.assert_array_equal(painted.image, grace)


def test_count(grace: np.ndarray) -> None:
    skin = ellipse_skin(grace.shape[:2], GRACE_FACE)
    assert len(paint_face(grace, skin, GRACE_FACE_WIDTH, rng(0), count=7).kinds) == 7
    empty = paint_face(grace, skin, GRACE_FACE_WIDTH, rng(0), count=0)
    assert empty.kinds == () and not empty.mask.any()
    drawn = [len(paint_face(grace, skin, GRACE_FACE_WIDTH, rng(s)).kinds) for s in range(40)]
    assert min(drawn) >= 6 and max(drawn) <= 20
    assert max(drawn) - min(drawn) >= 5


def test_deterministic_for_a_seed_and_different_across_seeds(grace: np.ndarray) -> None:
    skin = ellipse_skin(grace.shape[:2], GRACE_FACE)
    first = paint_face(grace, skin, GRACE_FACE_WIDTH, rng(3))
    again = paint_face(grace, skin, GRACE_FACE_WIDTH, rng(3))
    np.testing.assert_array_equal(first.image, again.image)
    np.testing.assert_array_equal(first.mask, again.mask)
    assert first.kinds == again.kinds
    other = paint_face(grace, skin, GRACE_FACE_WIDTH, rng(4))
    assert not np.array_equal(first.mask, other.mask)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"clean": np.zeros((8, 8, 3), dtype=np.float32)}, "uint8"),
        ({"clean": np.zeros((8, 8), dtype=np.uint8)}, r"\(H, W, 3\)"),
        ({"skin": np.ones((8, 9))}, "skin"),
        ({"skin": np.ones((8, 8), dtype=np.int64)}, "bool or float"),
        ({"face_width": 0.0}, "face_width"),
        ({"face_width": math.nan}, "face_width"),
        ({"count": -1}, "count"),
    ],
)
def test_bad_input_is_refused(change: dict[str, object], message: str) -> None:
    args = {
        "clean": np.zeros((8, 8, 3), dtype=np.uint8),
        "skin": np.ones((8, 8)),
        "face_width": 8.0,
        "rng": rng(0),
        "count": 1,
    }
    with pytest.raises(ValueError, match=message):
        paint_face(**(args | change))


# --- sizes and kinds ---------------------------------------------------------------------


def test_defect_area_scales_with_the_square_of_face_width(grace: np.ndarray) -> None:
    """The same seed at a photo and at its 2x upscale paints the same defects, 4x the area."""
    small = upscaled(grace, 2)
    large = upscaled(small, 2)
    ratios = []
    for seed in range(6):
        paintings = [
            paint_face(
                image,
                ellipse_skin(image.shape[:2], scaled_face(factor)),
                GRACE_FACE_WIDTH * factor,
                rng(seed),
                count=12,
            )
            for image, factor in ((small, 2), (large, 4))
        ]
        assert paintings[0].kinds == paintings[1].kinds
        ratios.append(paintings[1].mask.sum() / paintings[0].mask.sum())
    assert 3.6 < float(np.mean(ratios)) < 4.4, ratios


def test_radii_follow_the_face_width() -> None:
    """Mean equivalent radius of single defects is 0.6-2% of the face width."""
    clean = skin_patch(LIGHT_SKIN, size=320)
    face_width = 2000.0
    radii = []
    for kind in ("papule", "brown_macule", "post_inflammatory"):
        for _, painted in single_defects(kind, clean, face_width, 3):
            radii.append(math.sqrt(painted.mask.sum() / math.pi) / face_width)
    assert min(radii) > 0.006 and max(radii) < 0.04
    blackheads = single_defects("blackhead", clean, face_width, 3)
    tiny = [math.sqrt(p.mask.sum() / math.pi) / face_width for _, p in blackheads]
    assert max(tiny) < min(radii)


def test_every_kind_appears(grace: np.ndarray) -> None:
    skin = ellipse_skin(grace.shape[:2], GRACE_FACE)
    seen: set[str] = set()
    for seed in range(30):
        seen.update(paint_face(grace, skin, GRACE_FACE_WIDTH, rng(seed), count=20).kinds)
    assert seen == set(KINDS)
    assert len(KINDS) == 8


def test_pustule_has_a_light_head_in_a_red_ring() -> None:
    clean = skin_patch(LIGHT_SKIN)
    for _, painted in single_defects("pustule", clean, 1800.0, 5):
        distance, radius = rings(painted.mask)
        # The mask reaches out to the faint rim, so the head is the inner ~30% of its radius.
        head = distance < 0.15 * radius
        ring = (distance > 0.4 * radius) & (distance < 0.65 * radius)
        image = luma(painted.image)
        assert image[head].mean() > image[ring].mean() + 3.0
        lab, before = srgb_to_lab(painted.image), srgb_to_lab(clean)
        assert (lab[..., 1] - before[..., 1])[ring].mean() > 2.0


@pytest.mark.parametrize("kind", ["blackhead", "brown_macule"])
def test_dark_kinds_are_darker_than_the_skin_around(kind: str) -> None:
    clean = skin_patch(LIGHT_SKIN)
    for _, painted in single_defects(kind, clean, 1800.0, 5):
        distance, radius = rings(painted.mask)
        around = (distance > 1.3 * radius) & (distance < 2.0 * radius)
        image = luma(painted.image)
        assert image[painted.mask].mean() < image[around].mean() - 2.0


@pytest.mark.parametrize(
    ("kind", "signature"),
    [
        ("papule", lambda dl, da, db: da > 1.0),
        ("cluster", lambda dl, da, db: da > 1.0),
        ("whitehead", lambda dl, da, db: dl > 0.3 and abs(da) < 3.0),
        ("blackhead", lambda dl, da, db: dl < -1.0),
        ("post_inflammatory", lambda dl, da, db: da > 0.5 and dl < 0.0),
        ("brown_macule", lambda dl, da, db: dl < -1.0 and db > 0.5),
    ],
)
def test_each_kind_shifts_colour_its_own_way(
    kind: str, signature: Callable[[float, float, float], bool]
) -> None:
    clean = skin_patch(LIGHT_SKIN)
    for _, painted in single_defects(kind, clean, 1800.0, 4):
        dl, da, db = lab_change(clean, painted)
        assert signature(dl, da, db), (dl, da, db)


def test_grey_marks_take_colour_out() -> None:
    clean = skin_patch(LIGHT_SKIN)
    for _, painted in single_defects("grey_mark", clean, 1800.0, 4):
        m = painted.mask
        chroma = np.hypot(*np.moveaxis(srgb_to_lab(painted.image[m])[:, 1:], -1, 0))
        before = np.hypot(*np.moveaxis(srgb_to_lab(clean[m])[:, 1:], -1, 0))
        assert chroma.mean() < before.mean() - 0.5


def test_intensity_ranges_from_subtle_to_strong() -> None:
    clean = skin_patch(LIGHT_SKIN)
    skin = np.ones(clean.shape[:2], dtype=bool)
    peaks = []
    for seed in range(120):
        painted = paint_face(clean, skin, 1800.0, rng(seed), count=1)
        if painted.kinds:
            peaks.append(int(np.abs(painted.image.astype(int) - clean).max()))
    assert len(peaks) > 60
    assert min(peaks) <= 10
    assert max(peaks) >= 45
    assert max(peaks) <= 110


def test_redness_shows_less_on_darker_skin() -> None:
    light, dark = skin_patch(LIGHT_SKIN), skin_patch(DARK_SKIN)
    skin = np.ones(light.shape[:2], dtype=bool)
    for seed, painted in single_defects("papule", light, 1800.0, 4):
        # Same seed, same all-skin mask: the same papule in the same place, on darker skin.
        on_dark = paint_face(dark, skin, 1800.0, rng(seed), count=1)
        assert on_dark.kinds == ("papule",)
        assert lab_change(dark, on_dark)[1] < lab_change(light, painted)[1]


def test_skin_texture_shows_through() -> None:
    """Fine detail inside the defects is the skin's own: high-pass of the painted image
    correlates with that of the clean one, while pasting a flat colour would not."""
    clean = skin_patch(LIGHT_SKIN, size=320, seed=1)
    skin = np.ones(clean.shape[:2], dtype=bool)
    fine = luma(clean) - box_blur(luma(clean), 2)
    for seed in range(4):
        painted = paint_face(clean, skin, 1500.0, rng(seed), count=8)
        m = painted.mask
        assert m.sum() > 500
        painted_fine = luma(painted.image) - box_blur(luma(painted.image), 2)
        assert np.corrcoef(fine[m], painted_fine[m])[0, 1] > 0.85
        assert 0.6 < painted_fine[m].std() / fine[m].std() < 1.4
        # The same measure on a flat paste of the defects' mean colour: it does fail.
        flat = painted.image.copy()
        flat[m] = painted.image[m].mean(axis=0).astype(np.uint8)
        flat_fine = luma(flat) - box_blur(luma(flat), 2)
        assert np.corrcoef(fine[m], flat_fine[m])[0, 1] < 0.5


# --- cost at 8K ----------------------------------------------------------------------------


@pytest.mark.slow
def test_8k_photo_costs_little_more_than_its_copy() -> None:
    """A 7680x4320 photo with 20 defects: besides the two outputs, painting holds only small
    boxes (one full-frame float plane would be 133 MB), so no defect works on the whole frame."""
    h, w = 4320, 7680
    clean = rng(0).integers(90, 200, size=(h, w, 3), dtype=np.uint8)
    skin = np.zeros((h, w), dtype=bool)
    skin[1000:3200, 3100:4800] = True  # a 1,500 px face's skin
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        painted = paint_face(clean, skin, 1500.0, rng(1), count=20)
        peak = tracemalloc.get_traced_memory()[1] - start
    finally:
        tracemalloc.stop()
    assert len(painted.kinds) == 20
    outputs = painted.image.nbytes + painted.mask.nbytes
    assert peak - outputs < 16 * 2**20, f"{(peak - outputs) / 2**20:.0f} MiB besides outputs"
