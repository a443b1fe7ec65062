"""Defects painted on creases: where the crease finder looks, and that the painter puts the
asked share of defects there."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("scipy")

from images import grace_hopper

from model.faces import FaceParser
from training.data.blemishes import paint_blemishes, quantise
from training.data.face_crops import FaceCrop
from training.data.face_samples import creases, face_sample
from training.data.sources import skin_texture


def _skin(size: int = 160, seed: int = 0) -> np.ndarray:
    tex = skin_texture(size, size, np.random.default_rng(seed), scale=1.0)
    return quantise(tex).astype(np.float32) / 255.0


def _with_crease(skin: np.ndarray) -> np.ndarray:
    """`skin` with a dark diagonal line 3 px wide."""
    out = skin.copy()
    yy, xx = np.mgrid[: skin.shape[0], : skin.shape[1]]
    line = np.abs(yy - xx) <= 1
    out[line] *= 0.6
    return out


def test_creases_finds_a_dark_line_and_little_else() -> None:
    photo = _with_crease(_skin())
    found = creases(photo, face_width=200.0)
    yy, xx = np.mgrid[: photo.shape[0], : photo.shape[1]]
    on_line = np.abs(yy - xx) <= 1
    assert found[on_line].mean() > 0.9
    assert found[np.abs(yy - xx) > 6].mean() < 0.05
    assert creases(_skin(), face_width=200.0).mean() < 0.05


def test_face_samples_paint_on_creases_when_asked() -> None:
    """The sampler's option reaches the painter: the same seed paints other samples."""
    image = grace_hopper()
    parser = FaceParser()
    (region,) = parser.parse(image).regions
    parser.close()
    b = region.box
    crops = (
        FaceCrop(
            "hopper", image[b.y0 : b.y1, b.x0 : b.x1], region.skin / 255.0, region.faces[0].width
        ),
    )

    def samples(p_crease: float) -> list[np.ndarray]:
        rng = np.random.default_rng(4)
        return [
            face_sample(
                rng, 64, crops, lrl_size=384, p_hard_negative=0.0, p_clean=0.0, p_crease=p_crease
            ).input
            for _ in range(6)
        ]

    plain, creased = samples(0.0), samples(1.0)
    assert any(not np.array_equal(a, b) for a, b in zip(plain, creased, strict=True))


def test_prefer_share_one_centres_every_defect_on_the_preferred_place() -> None:
    clean = _skin()
    skin = np.ones(clean.shape[:2])
    prefer = np.zeros(clean.shape[:2], bool)
    prefer[78:82, 78:82] = True
    _, mask = paint_blemishes(
        clean, skin, np.random.default_rng(3), density=2.0, prefer=prefer, prefer_share=1.0
    )
    _, anywhere = paint_blemishes(clean, skin, np.random.default_rng(3), density=2.0)
    ys, xs = np.nonzero(mask)
    # Defects spread from their centre, but not across the crop as they do without the option.
    assert mask.any() and np.abs(ys - 80).max() < 40 and np.abs(xs - 80).max() < 40
    ays, axs = np.nonzero(anywhere)
    assert np.abs(ays - 80).max() >= 40 or np.abs(axs - 80).max() >= 40


def test_nowhere_preferred_paints_what_the_painter_always_did() -> None:
    clean = _skin()
    skin = np.ones(clean.shape[:2])
    plain = paint_blemishes(clean, skin, np.random.default_rng(5), density=2.0)
    nowhere = np.zeros(clean.shape[:2], bool)
    same = paint_blemishes(
        clean, skin, np.random.default_rng(5), density=2.0, prefer=nowhere, prefer_share=0.5
    )
    np.testing.assert_array_equal(plain[0], same[0])
