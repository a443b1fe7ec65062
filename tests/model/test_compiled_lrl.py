"""The compiled LRL (TorchInductor, CPU): the same retouch as eager within 1/255, used for face
crops at the working size, eager for small ones. One compile for the module (7-48 s)."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
import torch
from images import grace_hopper
from PIL import Image

from model.compiled_lrl import CompiledLRL
from model.engine import RetouchEngine
from model.net.abpn import pad_to_canvas
from model.weights import load_model


@pytest.fixture(scope="module")
def engines(cxx_compiler: str) -> tuple[RetouchEngine, RetouchEngine]:
    eager = RetouchEngine(load_model().model)
    compiled = RetouchEngine(eager.model, compile_lrl=True, face_parser=eager.face_parser)
    compiled.warmup()
    return eager, compiled


def _scaled(image: np.ndarray, factor: float) -> np.ndarray:
    h, w = image.shape[:2]
    size = (round(w * factor), round(h * factor))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BICUBIC))


def _calls(engine: RetouchEngine, photo: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """Times the compiled LRL ran while `engine` retouched `photo`, and the image and mask."""
    with mock.patch.object(
        CompiledLRL, "__call__", autospec=True, side_effect=CompiledLRL.__call__
    ) as spy:
        result = engine.retouch(photo, 1.0, return_mask=True)
    assert result.faces == 1
    return spy.call_count, result.image, result.mask


@pytest.mark.parametrize(
    ("factor", "compiled_calls", "tolerance"),
    # Twice the size: the face crop is shrunk to the working size and fills the canvas. At
    # 0.55 the crop fills less than half of it and stays eager, bit for bit.
    [(2.0, 1, 1), (0.55, 0, 0)],
    ids=["large face compiled", "small face eager"],
)
def test_compiled_engine_retouches_a_real_face_as_eager_does(
    engines, factor: float, compiled_calls: int, tolerance: int
) -> None:
    eager, compiled = engines
    photo = _scaled(grace_hopper(), factor)
    calls, image, mask = _calls(compiled, photo)
    assert calls == compiled_calls
    reference = eager.retouch(photo, 1.0, return_mask=True)
    assert (image != photo).any(), "the retouch changed nothing"
    assert np.abs(image.astype(int) - reference.image).max() <= tolerance
    assert np.abs(mask.astype(int) - reference.mask).max() <= tolerance


def test_compiled_outputs_do_not_hold_the_network_s_buffers(engines) -> None:
    _, compiled = engines
    lrl = compiled.compiled_lrl
    side = lrl.canvas[0]
    with torch.inference_mode():
        out = lrl(torch.rand(1, 3, side, side), torch.ones(1, 1, side, side))
    for tensor in (out.result, out.mask, out.mask_logits):
        assert tensor.untyped_storage().nbytes() == tensor.numel() * tensor.element_size()


def test_fits_takes_crops_that_fill_half_the_canvas() -> None:
    lrl = load_model().model.lrl
    compiled = CompiledLRL(lrl)  # compiles lazily: nothing runs here
    assert lrl.cfg.lrl_size == 384 and compiled.canvas == (384, 384)
    assert compiled.fits(torch.zeros(3, 384, 384))
    assert compiled.fits(torch.zeros(3, 384, 192))
    assert not compiled.fits(torch.zeros(3, 384, 191))
    assert not compiled.fits(torch.zeros(3, 385, 300))


def test_a_canvas_too_small_for_the_crops_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot hold"):
        pad_to_canvas([torch.zeros(3, 100, 90)], 8, (96, 96))
    canvas, valid = pad_to_canvas([torch.ones(3, 100, 90)], 8, (104, 96))
    assert canvas.shape == (1, 3, 104, 96)
    assert valid.sum() == 100 * 90


def test_the_compiled_lrl_is_refused_on_cuda() -> None:
    with pytest.raises(ValueError, match="CPU path"):
        RetouchEngine(load_model().model, device="cuda", compile_lrl=True)


def test_a_failed_compile_leaves_the_replica_eager(caplog) -> None:
    engine = RetouchEngine(load_model().model, compile_lrl=True)
    with mock.patch.object(CompiledLRL, "warm", side_effect=RuntimeError("no C++ compiler")):
        engine.warmup()
    assert engine.compiled_lrl is None
    assert "compiling the LRL failed" in caplog.text and "no C++ compiler" in caplog.text
    photo = _scaled(grace_hopper(), 2.0)
    assert engine.retouch(photo).faces == 1
