"""Faces and skin at run time, and the engine's face regions: what changes and what never does."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from images import astronaut, crowd, grace_hopper
from PIL import Image

from model.engine import RetouchEngine
from model.faces import Box, FaceParse, FaceParser, FaceRegion
from model.weights import load_model

# FaceMesh landmarks that must never be skin: iris centres, inner lips, brow middles.
PROTECTED_POINTS = {"iris": (468, 473), "lips": (13, 14), "brows": (105, 334)}
CHEEKS = (205, 425)


@pytest.fixture(scope="module")
def parser() -> FaceParser:
    p = FaceParser()
    yield p
    p.close()


@pytest.fixture(scope="module")
def engine(parser: FaceParser) -> RetouchEngine:
    return RetouchEngine(load_model().model, face_parser=parser)


def _skin_at(parse: FaceParse, shape, points: np.ndarray) -> np.ndarray:
    skin = parse.skin_mask(shape)
    xy = np.round(points).astype(int)
    return skin[xy[:, 1], xy[:, 0]]


def test_parser_finds_the_face_and_its_skin_but_never_its_parts(parser: FaceParser) -> None:
    image = grace_hopper()
    parse = parser.parse(image)
    assert len(parse.faces) == 1 and len(parse.regions) == 1
    face = parse.faces[0]
    assert face.landmarks is not None and face.landmarks.shape == (478, 2)
    assert 120 < face.width < 320
    assert (_skin_at(parse, image.shape[:2], face.landmarks[list(CHEEKS)]) > 128).all()
    for part, points in PROTECTED_POINTS.items():
        values = _skin_at(parse, image.shape[:2], face.landmarks[list(points)])
        assert (values == 0).all(), f"{part} is marked as skin"
    skin = parse.skin_mask(image.shape[:2])
    assert 0.02 < (skin > 0).mean() < 0.3
    b = parse.regions[0].box
    outside = np.ones(skin.shape, bool)
    outside[b.y0 : b.y1, b.x0 : b.x1] = False
    assert not skin[outside].any()


def test_parser_finds_the_same_face_at_4k(parser: FaceParser) -> None:
    small = grace_hopper()
    big = np.asarray(Image.fromarray(small).resize((3840 * 512 // 600, 3840), Image.BICUBIC))
    scale = big.shape[0] / small.shape[0]
    a = parser.parse(small).faces[0]
    b = parser.parse(big).faces[0]
    assert b.width / (a.width * scale) == pytest.approx(1.0, abs=0.08)
    assert np.abs(b.landmarks / scale - a.landmarks).mean() < 0.02 * a.width


def _area(box: Box) -> int:
    return box.width * box.height


def test_a_face_cap_meshes_the_largest_faces_and_counts_the_rest(parser: FaceParser) -> None:
    photo = crowd()
    detected = parser.detect(photo)
    full = parser.parse(photo)
    assert len(detected) == len(full.faces) == len(full.regions) >= 3 and full.skipped == 0
    largest = sorted(detected, key=lambda f: _area(f.box), reverse=True)[:2]
    capped = parser.parse(photo, max_faces=2)
    assert {f.box for f in capped.faces} == {f.box for f in largest}
    assert capped.skipped == len(detected) - 2
    # The kept faces are parsed as without the cap (these faces lie apart: no neighbour's parts
    # cut from their skin).
    regions = {r.faces[0].box: r for r in full.regions}
    assert len(capped.regions) == 2
    for region in capped.regions:
        want = regions[region.faces[0].box]
        assert region.box == want.box
        np.testing.assert_array_equal(region.skin, want.skin)
    within = parser.parse(photo, max_faces=len(detected))
    assert [f.box for f in within.faces] == [f.box for f in full.faces] and within.skipped == 0
    with pytest.raises(ValueError, match="max_faces"):
        parser.parse(photo, max_faces=0)


def test_an_engine_with_a_face_cap_leaves_the_smaller_faces_alone(parser: FaceParser) -> None:
    photo = crowd()
    detected = sorted(parser.detect(photo), key=lambda f: _area(f.box), reverse=True)
    engine = RetouchEngine(load_model().model, face_parser=parser, max_faces=1)
    result = engine.retouch(photo, whitening=1.0)
    assert result.faces == 1 and result.faces_skipped == len(detected) - 1
    changed = (result.image != photo).any(axis=-1)
    assert changed.any()
    for face in detected[1:]:
        b = face.box
        assert not changed[b.y0 : b.y1, b.x0 : b.x1].any(), face
    assert RetouchEngine(load_model().model, face_parser=parser).parse(photo).skipped == 0


def test_a_photo_without_faces_comes_back_unchanged(engine: RetouchEngine) -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    result = engine.retouch(image, 1.5, return_mask=True, whitening=1.5)
    assert result.faces == 0
    assert np.array_equal(result.image, image)
    assert result.mask is not None and not result.mask.any()


def test_nothing_outside_the_skin_mask_changes(engine: RetouchEngine) -> None:
    image = grace_hopper()
    skin = engine.parse(image).skin_mask(image.shape[:2])
    result = engine.retouch(image, 1.5, return_mask=True, whitening=1.0)
    assert result.faces == 1
    off_skin = skin == 0
    assert np.array_equal(result.image[off_skin], image[off_skin])
    assert not result.mask[off_skin].any()
    assert (result.image[~off_skin] != image[~off_skin]).any()


def test_whitening_zero_is_identity_and_whitening_lightens_only_skin(
    engine: RetouchEngine,
) -> None:
    image = grace_hopper()
    assert np.array_equal(engine.retouch(image, 0.0, whitening=0.0).image, image)
    skin = engine.parse(image).skin_mask(image.shape[:2])
    lighter = engine.retouch(image, 0.0, whitening=1.0).image.astype(int)
    core = skin == 255
    gain = (lighter[core] - image[core]).mean()
    assert 2.0 < gain < 20.0, f"whitening 1 raised skin by {gain:.1f} levels on average"
    assert np.array_equal(lighter[skin == 0], image[skin == 0])
    stronger = engine.retouch(image, 0.0, whitening=1.5).image.astype(int)
    assert (stronger[core] - image[core]).mean() > gain


def _shifted(parse: FaceParse, dy: int, dx: int, shape) -> FaceParse:
    regions = []
    for r in parse.regions:
        b = r.box
        box = Box(b.x0 + dx, b.y0 + dy, b.x1 + dx, b.y1 + dy)
        regions.append(FaceRegion(box, r.faces, r.skin))
    return replace(parse, regions=tuple(regions))


def test_a_face_is_retouched_alike_in_a_small_and_a_large_photo(engine: RetouchEngine) -> None:
    # The same face pasted into a 1K and an 8K-wide canvas: its region, and so what the LRL sees
    # of it, is the same, and so is the result; everything else stays as it was.
    face = grace_hopper()
    small = np.full((700, 1000, 3), 90, np.uint8)
    large = np.full((1200, 7680, 3), 90, np.uint8)
    small[50:650, 100:612] = face
    large[300:900, 5000:5512] = face
    parse_small = engine.parse(small)
    parse_large = _shifted(parse_small, 250, 4900, large.shape[:2])
    (a,) = engine.retouch_batch([small], 1.0, parses=[parse_small])
    (b,) = engine.retouch_batch([large], 1.0, parses=[parse_large])
    box = parse_small.regions[0].box
    crop_a = a.image[box.y0 : box.y1, box.x0 : box.x1]
    crop_b = b.image[box.y0 + 250 : box.y1 + 250, box.x0 + 4900 : box.x1 + 4900]
    assert np.array_equal(crop_a, crop_b)
    assert (crop_a != small[box.y0 : box.y1, box.x0 : box.x1]).any()
    untouched = large.copy()
    untouched[box.y0 + 250 : box.y1 + 250, box.x0 + 4900 : box.x1 + 4900] = crop_b
    assert np.array_equal(b.image, untouched)


def test_real_faces_batched_equal_one_at_a_time(engine: RetouchEngine) -> None:
    images = [grace_hopper(), astronaut(), grace_hopper()[:300, :400]]
    strengths = [1.0, 0.6, 1.3]
    batched_engine = RetouchEngine(engine.model, lrl_chunk=64, face_parser=engine.face_parser)
    batched = batched_engine.retouch_batch(images, strengths, True, whitening=[0.0, 0.5, 1.0])
    for image, s, w, got in zip(images, strengths, [0.0, 0.5, 1.0], batched, strict=True):
        alone = engine.retouch(image, s, return_mask=True, whitening=w)
        assert alone.faces == got.faces
        assert np.abs(alone.image.astype(int) - got.image).max() <= 1
        assert np.abs(alone.mask.astype(int) - got.mask).max() <= 1


def test_bad_whitening_is_refused(engine: RetouchEngine) -> None:
    with pytest.raises(ValueError, match="whitening"):
        engine.retouch(grace_hopper(), whitening=1.6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_half_precision_on_a_real_face_matches_the_cpu(engine: RetouchEngine) -> None:
    image = grace_hopper()
    cpu = engine.retouch(image, 1.0, return_mask=True, whitening=0.5)
    gpu_engine = RetouchEngine(engine.model, device="cuda", face_parser=engine.face_parser)
    gpu = gpu_engine.retouch(image, 1.0, return_mask=True, whitening=0.5)
    assert gpu.faces == cpu.faces == 1
    skin = engine.parse(image).skin_mask(image.shape[:2])
    assert np.array_equal(gpu.image[skin == 0], image[skin == 0])
    assert np.abs(cpu.image.astype(int) - gpu.image).mean() < 1.0
