"""Real-lesion measurements, and the training painter's papules against what they measured."""

import cv2
import numpy as np
import pytest
from images import grace_hopper
from test_import_boundaries import REPO, forbidden_chain

from model.faces import FaceParser
from training.data.blemishes import paint_blemishes
from training.lesions.spots import contrast_maps, find_spots, is_strict, lab_float


def test_training_never_reaches_the_research_measurements() -> None:
    chain = forbidden_chain(REPO, "training.train", lambda m: m.startswith("training.lesions"))
    assert chain is None, " -> ".join(chain)


def test_a_painted_red_spot_is_found_as_a_strict_lesion() -> None:
    image = grace_hopper()
    parser = FaceParser()
    try:
        face = parser.parse(image).faces[0]
    finally:
        parser.close()
    x, y = np.round(face.landmarks[205]).astype(int)  # the left cheek
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB).astype(np.float32)
    disc = np.zeros(image.shape[:2], np.uint8)
    cv2.circle(disc, (x, y), round(0.01 * face.width), 1, -1)
    lab[disc > 0] += (-12.0, 10.0, 2.0)
    painted = cv2.cvtColor(np.clip(lab, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)
    near = [s for s in find_spots(painted, face) if np.hypot(s.x - x, s.y - y) < 3]
    assert near and near[0].strict
    assert not any(np.hypot(s.x - x, s.y - y) < 3 for s in find_spots(image, face) if s.strict)


@pytest.mark.parametrize("seed", range(3))
def test_painted_papules_have_the_contrast_of_real_ones(seed: int) -> None:
    # A flat light skin tone, so that every blob found is a painted one; a face 256 px wide.
    clean = np.full((256, 256, 3), np.float32([200, 160, 140]) / 255.0)
    rng = np.random.default_rng(seed)
    painted, mask = paint_blemishes(
        clean, np.ones((256, 256)), rng, scale=256 / 250, density=8.0, kinds=("acne",)
    )
    lab = lab_float(np.clip(np.rint(painted * 255), 0, 255).astype(np.uint8))
    best, best_r, best_d = contrast_maps(lab, np.ones((256, 256), bool), 256.0)
    n, labels = cv2.connectedComponents(mask.astype(np.uint8))
    da, radius = [], []
    for i in range(1, n):
        ys, xs = np.nonzero(labels == i)
        j = int(np.argmax(best[ys, xs]))
        if is_strict(best_d[ys[j], xs[j]], float(best_r[ys[j], xs[j]]), 256.0):
            da.append(best_d[ys[j], xs[j], 1])
            radius.append(best_r[ys[j], xs[j]] / 256.0)
    assert len(da) >= 8
    # Real papules on ACNE04 faces measured a* +2.3 / +3.8 / +7.4 and a radius of 0.6% / 0.9% /
    # 1.3% of the face width (10th / 50th / 90th percentiles); the previous painter's were
    # +5.8 / +12.0 / +18.4 and 0.6% / 1.3% / 1.9%. (On flat skin the measure picks the next
    # larger radius more often than on textured skin.)
    assert 2.5 <= np.median(da) <= 6.0
    assert np.median(radius) <= 0.013
