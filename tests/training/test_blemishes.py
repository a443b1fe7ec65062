"""The blemish synthesiser, its clean sources and the datasets built on them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("skimage")
pytest.importorskip("matplotlib")

from training.data.blemishes import (
    DEFECT_KINDS,
    MIN_LEVELS,
    paint_blemishes,
    quantise,
)
from training.data.dataset import TrainSampler, make_eval_set
from training.data.sources import (
    load_portraits,
    portrait_regions,
    skin_texture,
)


def _clean_texture(seed: int, size: int = 96, scale: float = 1.0) -> np.ndarray:
    """A uint8-valued float texture, as the dataset feeds the synthesiser."""
    tex = skin_texture(size, size, np.random.default_rng(seed), scale=scale)
    return quantise(tex).astype(np.float32) / 255.0


def _differs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.any(a != b, axis=-1)


@pytest.mark.parametrize("seed", range(4))
def test_mask_is_exactly_where_uint8_input_and_target_differ(seed: int) -> None:
    clean = _clean_texture(seed, scale=0.8)
    defective, mask = paint_blemishes(
        clean, np.ones(clean.shape[:2]), np.random.default_rng(seed), scale=0.8, density=2.0
    )
    assert mask.dtype == bool and mask.any()
    np.testing.assert_array_equal(mask, _differs(defective, clean))
    inp, target = quantise(defective), quantise(clean)
    np.testing.assert_array_equal(mask, _differs(inp, target))
    # Every marked pixel moved by a visible amount, not by a rounding accident.
    change = np.abs(inp.astype(int) - target.astype(int)).max(axis=-1)
    assert change[mask].min() >= MIN_LEVELS


def test_mask_exact_on_a_real_portrait() -> None:
    portrait = load_portraits()[1]
    clean = portrait.image[150:350, 160:360].astype(np.float32) / 255.0
    skin = portrait.skin[150:350, 160:360]
    defective, mask = paint_blemishes(
        clean, skin, np.random.default_rng(3), scale=portrait.defect_scale, density=2.0
    )
    assert mask.any()
    np.testing.assert_array_equal(mask, _differs(quantise(defective), quantise(clean)))
    assert not (mask & (skin <= 0)).any(), "a defect landed off the skin mask"


def test_same_seed_same_defects_and_different_seeds_differ() -> None:
    clean = _clean_texture(0)
    skin = np.ones(clean.shape[:2])
    a = paint_blemishes(clean, skin, np.random.default_rng(7))
    b = paint_blemishes(clean, skin, np.random.default_rng(7))
    c = paint_blemishes(clean, skin, np.random.default_rng(8))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


@pytest.mark.parametrize("kind", DEFECT_KINDS)
def test_every_defect_kind_appears_and_changes_pixels(kind: str) -> None:
    clean = _clean_texture(1, size=128, scale=1.5)
    defective, mask = paint_blemishes(
        clean, np.ones(clean.shape[:2]), np.random.default_rng(2), scale=1.5, kinds=[kind]
    )
    assert mask.sum() >= 10
    change = np.abs(quantise(defective).astype(int) - quantise(clean).astype(int)).max(axis=-1)
    assert change.max() >= 8, f"{kind} is too faint to see"


def test_defects_land_only_on_skin() -> None:
    clean = _clean_texture(2, size=128)
    skin = np.zeros((128, 128), np.float32)
    skin[:, :50] = 1.0
    skin[:, 50:70] = np.linspace(1.0, 0.0, 20)  # a soft edge, as the skin detector gives
    defective, mask = paint_blemishes(clean, skin, np.random.default_rng(4), density=4.0)
    assert mask[:, :50].any()
    assert not mask[:, 69:].any()
    np.testing.assert_array_equal(defective[:, 69:], clean[:, 69:])


def test_no_skin_means_no_change_and_bad_kinds_are_rejected() -> None:
    clean = _clean_texture(3, size=32)
    defective, mask = paint_blemishes(clean, np.zeros((32, 32)), np.random.default_rng(0))
    assert not mask.any()
    np.testing.assert_array_equal(defective, clean)
    with pytest.raises(ValueError, match="unknown defect kinds"):
        paint_blemishes(clean, np.ones((32, 32)), np.random.default_rng(0), kinds=["pimple"])


def test_skin_detector_finds_faces_not_backgrounds() -> None:
    astronaut, grace = load_portraits()
    assert astronaut.skin[130, 200] > 0.5 and grace.skin[265, 205] > 0.5  # cheeks
    assert astronaut.skin[40, 40] == 0 and grace.skin[60, 450] == 0  # backdrops
    assert astronaut.skin[148, 228] == 0  # teeth


def test_eval_regions_never_overlap_training_regions() -> None:
    train, held_out = portrait_regions("train"), portrait_regions("eval")
    for portrait, tr, ev in zip(load_portraits(), train, held_out, strict=True):
        assert tr.image.shape[1] == portrait.split_x == ev.x_offset
        np.testing.assert_array_equal(np.concatenate([tr.image, ev.image], 1), portrait.image)
    splits = {p.name: p.split_x for p in load_portraits()}

    sampler = TrainSampler(seed=5, crop_size=96, p_real=1.0)
    for _ in range(12):
        s = sampler.sample()
        assert s.box is not None and s.box[2] <= splits[s.source]
    for s in make_eval_set(n=6, size=96, seed=99):
        if s.box is not None:
            assert s.box[0] >= splits[s.source]


def test_dataset_masks_are_exact_and_weights_live_on_them() -> None:
    sampler = TrainSampler(seed=2, crop_size=96)
    samples = [sampler.sample() for _ in range(10)] + make_eval_set(n=4, size=96)
    for s in samples:
        assert s.input.dtype == s.target.dtype == np.uint8 and s.mask.dtype == bool
        np.testing.assert_array_equal(s.mask, _differs(s.input, s.target))
        assert (s.weight[~s.mask] == 0).all() and (s.weight[s.mask] > 0).all()
    assert sum(s.mask.any() for s in samples) >= len(samples) - 2


def test_eval_set_is_fixed_and_starts_the_same_at_any_length() -> None:
    a = make_eval_set(n=4, size=64)
    b = make_eval_set(n=2, size=64)
    assert [s.source for s in a][:2] == [s.source for s in b]
    for x, y in zip(a, b, strict=False):
        np.testing.assert_array_equal(x.input, y.input)
        np.testing.assert_array_equal(x.mask, y.mask)
    assert {s.source for s in a} >= {"texture"} and all(s.mask.any() for s in a)
    assert not np.array_equal(make_eval_set(n=1, size=64, seed=1)[0].input, a[0].input)


def test_sampler_batches_shapes_ranges_and_determinism() -> None:
    batch = TrainSampler(seed=3, crop_size=64, batch_size=4).batch()
    again = TrainSampler(seed=3, crop_size=64, batch_size=4).batch()
    other = TrainSampler(seed=4, crop_size=64, batch_size=4).batch()
    assert batch.input.shape == batch.target.shape == (4, 3, 64, 64)
    assert batch.mask.shape == batch.weight.shape == (4, 1, 64, 64)
    for t in batch:
        assert t.dtype == torch.float32 and t.min() >= 0 and t.max() <= 1
    assert set(batch.mask.unique().tolist()) <= {0.0, 1.0}
    changed = (batch.input != batch.target).any(dim=1, keepdim=True)
    assert torch.equal(changed.float(), batch.mask)
    for x, y in zip(batch, again, strict=True):
        assert torch.equal(x, y)
    assert not torch.equal(batch.input, other.input)


def test_iterable_dataset_feeds_a_dataloader() -> None:
    from torch.utils.data import DataLoader

    from training.data.dataset import Batch, BlemishBatches

    loader = DataLoader(BlemishBatches(seed=0, crop_size=32, batch_size=2), batch_size=None)
    batch = next(iter(loader))
    assert isinstance(batch, Batch) and batch.input.shape == (2, 3, 32, 32)
