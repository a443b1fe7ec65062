"""Training samples from real face regions, and the whole-photo split of the real photos."""

import numpy as np
import pytest
from images import grace_hopper

from model.faces import FaceParser
from training.data.face_crops import FaceCrop
from training.data.face_samples import face_sample
from training.data.real_photos import PHOTOS, photos


@pytest.fixture(scope="module")
def crops() -> tuple[FaceCrop, ...]:
    image = grace_hopper()
    parser = FaceParser()
    parse = parser.parse(image)
    parser.close()
    (region,) = parse.regions
    b = region.box
    crop = FaceCrop(
        "hopper", image[b.y0 : b.y1, b.x0 : b.x1], region.skin / 255.0, region.faces[0].width
    )
    return (crop,)


def test_painted_samples_have_exact_masks_on_skin(crops) -> None:
    rng = np.random.default_rng(0)
    masked = 0
    for _ in range(12):
        s = face_sample(rng, 96, crops, lrl_size=384, p_hard_negative=0.0, p_clean=0.0)
        assert s.input.shape == s.target.shape == (96, 96, 3) and s.input.dtype == np.uint8
        np.testing.assert_array_equal(s.mask, (s.input != s.target).any(axis=-1))
        masked += int(s.mask.sum())
        # Never larger than the engine would show it: the region's long side shrunk to 384.
        c = crops[0]
        assert s.scale * 250 <= c.face_width * 384 / max(c.skin.shape) + 1e-6
    assert masked > 0


def test_hard_negatives_have_an_empty_target(crops) -> None:
    rng = np.random.default_rng(1)
    for _ in range(6):
        s = face_sample(rng, 96, crops, lrl_size=384, p_hard_negative=1.0)
        assert not s.mask.any()
        np.testing.assert_array_equal(s.input, s.target)


def test_the_split_is_by_whole_photo() -> None:
    names = [p.name for p in PHOTOS]
    assert len(names) == len(set(names))
    sources = {(p.package, p.path) for p in photos("train")}
    for split in ("eval", "demo"):
        for p in photos(split):
            assert (p.package, p.path) not in sources, f"{p.name} is also a training photo"
    assert len(photos("eval")) >= 4 and len(photos("train")) >= 4
