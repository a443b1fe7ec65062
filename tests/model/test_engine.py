"""The engine's pyramid: sizes, strength, batching across sizes, tiling, devices.

These run on synthetic content with the whole photo as one all-skin region (`FaceParse.whole`),
so every pixel goes through the network; tests/model/test_face_regions.py covers real faces."""

import cv2
import numpy as np
import pytest
import torch

from model.engine import RetouchEngine, validate_image
from model.faces import FaceParse
from model.net.abpn import ABPN
from model.net.config import ABPNConfig
from model.result import RetouchResult


def _model(**overrides) -> ABPN:
    torch.manual_seed(0)
    model = ABPN(ABPNConfig(**overrides)).eval()
    # Give the zero-initialised heads real weights so every path changes pixels.
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1 and not p.abs().sum():
                p.normal_(0, 0.05)
    return model


def _photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = 120 + 60 * np.sin(yy / 37.0)[..., None] + 40 * np.cos(xx / 23.0)[..., None]
    noise = rng.normal(0, 12, size=(h, w, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def _run(
    engine: RetouchEngine, image: np.ndarray, strength: float = 1.0, return_mask: bool = False
) -> RetouchResult:
    (result,) = engine.retouch_batch(
        [image], strength, return_mask, parses=[FaceParse.whole(image.shape[:2])]
    )
    return result


@pytest.fixture(scope="module")
def engine() -> RetouchEngine:
    return RetouchEngine(_model(lrl_size=64, tile_size=96))


@pytest.mark.parametrize("shape", [(37, 53), (300, 200), (17, 900), (401, 299), (1, 1)])
def test_output_matches_input_size(engine: RetouchEngine, shape) -> None:
    image = _photo(*shape)
    result = _run(engine, image, return_mask=True)
    assert result.image.shape == image.shape and result.image.dtype == np.uint8
    assert result.mask is not None and result.mask.shape == shape


@pytest.mark.slow
def test_extreme_sizes_with_default_config() -> None:
    engine = RetouchEngine(_model())
    for shape in [(2999, 4001), (9000, 17)]:
        image = _photo(*shape)
        assert _run(engine, image).image.shape == image.shape


def test_strength_zero_returns_input_exactly(engine: RetouchEngine) -> None:
    image = _photo(250, 333)
    result = _run(engine, image, strength=0.0)
    assert np.array_equal(result.image, image)


def test_strength_interpolates_and_extrapolates(engine: RetouchEngine) -> None:
    image = _photo(120, 160)
    full = _run(engine, image, 1.0).image.astype(float)
    half = _run(engine, image, 0.5).image.astype(float)
    more = _run(engine, image, 1.5).image.astype(float)
    changed = np.abs(full - image) > 4
    assert changed.any()
    expected_half = (image.astype(float) + full) / 2
    assert np.abs(half - expected_half)[changed].mean() < 1.5
    assert np.abs(more - image)[changed].mean() > np.abs(full - image)[changed].mean()


def test_bad_strength_and_images_are_refused(engine: RetouchEngine) -> None:
    with pytest.raises(ValueError, match="strength"):
        _run(engine, _photo(8, 8), strength=1.6)
    for bad in [
        np.zeros((4, 4), np.uint8),
        np.zeros((4, 4, 3), np.float32),
        np.zeros((0, 4, 3), np.uint8),
    ]:
        with pytest.raises(ValueError):
            validate_image(bad)


def test_batched_mixed_sizes_equal_one_at_a_time(engine: RetouchEngine) -> None:
    # One LRL call over the whole batch (the default on CUDA) against one photo at a time.
    batched_engine = RetouchEngine(engine.model, tile_size=engine.tile_size, lrl_chunk=64)
    images = [_photo(120, 90, 1), _photo(64, 200, 2), _photo(333, 500, 3), _photo(30, 30, 4)]
    strengths = [1.0, 0.7, 1.2, 1.0]
    parses = [FaceParse.whole(i.shape[:2]) for i in images]
    batched = batched_engine.retouch_batch(images, strengths, True, parses=parses)
    for image, strength, got in zip(images, strengths, batched, strict=True):
        alone = _run(engine, image, strength, return_mask=True)
        assert np.abs(alone.image.astype(int) - got.image).max() <= 1
        assert np.abs(alone.mask.astype(int) - got.mask).max() <= 1


@pytest.mark.parametrize("blob_gain", [0.0, 10.0], ids=["plain", "red-blob prior"])
def test_lrl_batch_equals_single_on_raw_tensors(blob_gain: float) -> None:
    # With the prior, each crop's is measured on that crop alone, inside its own face's area
    # and zone: batching cannot change it.
    model = _model(lrl_size=64, blob_gain=blob_gain)
    torch.manual_seed(3)
    lows = [torch.rand(3, 40, 64), torch.rand(3, 64, 23), torch.rand(3, 64, 64)]
    zones = [(torch.rand(2, *low.shape[-2:]) > 0.2).float() for low in lows]
    with torch.inference_mode():
        batched = model.low_res(lows, zones=zones)
        for low, zone, got in zip(lows, zones, batched, strict=True):
            (alone,) = model.low_res([low], zones=[zone])
            torch.testing.assert_close(got.result, alone.result, atol=1e-5, rtol=0)
            torch.testing.assert_close(got.mask, alone.mask, atol=1e-5, rtol=0)


@pytest.mark.parametrize("shape", [(700, 1100), (513, 1537)])
def test_tiled_pyramid_equals_untiled(shape) -> None:
    model = _model(lrl_size=128)
    image = _photo(*shape, seed=5)
    untiled = _run(RetouchEngine(model, tile_size=4096), image, 1.3, return_mask=True)
    tiled = _run(RetouchEngine(model, tile_size=100), image, 1.3, return_mask=True)
    assert np.abs(untiled.image.astype(int) - tiled.image).max() <= 1
    assert np.abs(untiled.mask.astype(int) - tiled.mask).max() <= 1
    assert (untiled.image != image).any()


def _spotted_skin(h: int, w: int) -> np.ndarray:
    """Even skin with three red spots: the blob prior gives a sparse mask on them."""
    rng = np.random.default_rng(1)
    image = np.array([200.0, 150.0, 130.0]) + rng.normal(0, 4, (h, w, 3))
    yy, xx = np.mgrid[0:h, 0:w]
    for cy, cx in [(150, 200), (500, 800), (350, 620)]:
        image[(yy - cy) ** 2 + (xx - cx) ** 2 < 12**2] = [170, 80, 80]
    return np.clip(image, 0, 255).astype(np.uint8)


@pytest.mark.parametrize(("whitening", "chroma_detail"), [(0.0, 0.0), (0.8, 0.0), (0.0, 1.0)])
def test_sparse_mask_tiles_equal_untiled(whitening: float, chroma_detail: float) -> None:
    """Tiles render only the box their mask reaches; with whitening that box is laid into the
    whole tile. Either way the photo matches the untiled pyramid's."""
    model = _model(lrl_size=128, blob_gain=40.0, mask_threshold=0.5, chroma_detail=chroma_detail)
    with torch.no_grad():
        model.lrl.mask_head.bias.fill_(-20.0)  # only the prior's spots reach the mask
    image = _spotted_skin(700, 1100)
    parse = [FaceParse.whole(image.shape[:2])]
    untiled, tiled = (
        RetouchEngine(model, tile_size=size).retouch_batch([image], 1.0, True, whitening, parse)[0]
        for size in (4096, 100)
    )
    assert 0 < (tiled.mask > 0).mean() < 0.05
    assert np.abs(untiled.image.astype(int) - tiled.image).max() <= 1
    assert np.abs(untiled.mask.astype(int) - tiled.mask).max() <= 1
    if whitening == 0.0:
        assert np.array_equal(tiled.image[tiled.mask == 0], image[tiled.mask == 0])
    else:
        assert (tiled.image[tiled.mask == 0] != image[tiled.mask == 0]).any()


def _luma(image: np.ndarray) -> np.ndarray:
    return image.astype(float) @ np.array([0.299, 0.587, 0.114])


def _fine(image: np.ndarray) -> np.ndarray:
    """Detail finer than a few pixels."""
    x = image.astype(np.float32)
    return x - cv2.GaussianBlur(x, (0, 0), 3.0)


def test_colour_detail_goes_inside_the_mask_and_its_luma_stays() -> None:
    """The spots' colour noise is finer than the working size (1100 px against 128): with
    `chroma_detail` the mask's pixels lose its colour and keep its luma; the rest is as before."""
    model = _model(lrl_size=128, blob_gain=40.0, mask_threshold=0.5)
    with torch.no_grad():
        model.lrl.mask_head.bias.fill_(-20.0)  # only the prior's spots reach the mask
    image = _spotted_skin(700, 1100)
    off = _run(RetouchEngine(model), image, return_mask=True)
    model.set_inference(chroma_detail=1.0)
    on = _run(RetouchEngine(model), image, return_mask=True)
    assert np.array_equal(on.mask, off.mask)
    inside = on.mask > 200
    assert 0 < (on.mask > 0).mean() < 0.05
    assert np.array_equal(on.image[on.mask == 0], off.image[on.mask == 0])
    fine_on, fine_off = _fine(on.image), _fine(off.image)
    colour_on = fine_on - _luma(fine_on)[..., None]
    colour_off = fine_off - _luma(fine_off)[..., None]
    assert np.abs(colour_on[inside]).mean() < 0.7 * np.abs(colour_off[inside]).mean()
    # The luma stays, up to rounding each channel to 8 bits, wherever no channel clips (this
    # untrained network's retouch saturates some of the spots' red).
    unclipped = inside & (np.minimum(on.image, off.image).min(-1) > 0)
    unclipped &= np.maximum(on.image, off.image).max(-1) < 255
    assert unclipped.mean() > 0.5 * inside.mean()
    assert np.abs(_luma(on.image) - _luma(off.image))[unclipped].max() <= 1.0


def test_untouched_pixels_stay_bit_exact_when_the_mask_is_zero() -> None:
    model = _model(lrl_size=64, tile_size=64)
    with torch.no_grad():
        model.lrl.mask_head.bias.fill_(-20.0)  # the mask branch finds nothing to retouch
    image = _photo(300, 400)
    result = _run(RetouchEngine(model), image, 1.5, return_mask=True)
    assert np.array_equal(result.image, image)
    assert not result.mask.any()


def test_engine_does_not_modify_the_callers_model() -> None:
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _run(RetouchEngine(model), _photo(64, 64))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_half_precision_needs_cuda() -> None:
    with pytest.raises(ValueError, match="CUDA"):
        RetouchEngine(_model(), device="cpu", half=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_half_matches_cpu_float() -> None:
    model = _model(lrl_size=128)
    image = _photo(600, 900)
    cpu = _run(RetouchEngine(model), image, return_mask=True)
    gpu = _run(RetouchEngine(model, device="cuda"), image, return_mask=True)
    assert gpu.image.shape == image.shape
    assert np.abs(cpu.image.astype(int) - gpu.image).mean() < 1.0


def test_untouched_says_when_no_pixel_could_change(engine: RetouchEngine) -> None:
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    whole = [FaceParse.whole(image.shape[:2])]
    (faceless,) = engine.retouch_batch([image], 1.0, True, parses=[FaceParse((), ())])
    (zero,) = engine.retouch_batch([image], 0.0, True, parses=whole)
    (done,) = engine.retouch_batch([image], 1.0, True, parses=whole)
    assert faceless.untouched and zero.untouched and not done.untouched
    assert np.array_equal(faceless.image, image) and np.array_equal(zero.image, image)
