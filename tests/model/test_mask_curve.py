"""The LRL's effective mask: zero at or below the threshold, the soft values above it scaled to
[0, 1] and bent by `mask_gamma`; the curve travels with the checkpoint and the shipped weights
use one."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model.net.abpn import ABPN
from model.net.config import ABPNConfig
from model.weights import load_checkpoint, load_model, save_checkpoint

CFG = ABPNConfig(channels=8, depth=2, lrl_size=64)


def _run(model: ABPN) -> tuple[torch.Tensor, torch.Tensor]:
    """The LRL's soft mask and effective mask on a fixed random image."""
    image = torch.rand((1, 3, 64, 64), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        out = model.lrl(image, torch.ones((1, 1, 64, 64)))
    return torch.sigmoid(out.mask_logits), out.mask


def _model() -> ABPN:
    torch.manual_seed(0)
    model = ABPN(CFG).eval()
    # Logits centred and widened, so the soft mask spans (0, 1) and both sides of the
    # threshold are hit.
    logits = torch.logit(_run(model)[0])
    gain = 8.0 / float(logits.std())
    with torch.no_grad():
        head = model.lrl.mask_head
        head.bias.sub_(float(logits.median())).mul_(gain)
        head.weight.mul_(gain)
    return model


def test_gamma_one_scales_the_values_above_the_threshold() -> None:
    model = _model()
    model.set_mask_threshold(0.5)
    soft, mask = _run(model)
    assert (soft < 0.1).any() and (soft > 0.9).any()
    assert torch.equal(mask, torch.relu(soft - 0.5) / 0.5)


@pytest.mark.parametrize("gamma", [1.5, 2.0])
def test_gamma_bends_the_mask_up_without_a_step_at_the_threshold(gamma: float) -> None:
    model = _model()
    model.set_mask_threshold(0.5, gamma)
    soft, mask = _run(model)
    scaled = torch.relu(soft - 0.5) / 0.5
    assert torch.all(mask[soft <= 0.5] == 0.0)  # clean skin stays bit-exact
    assert torch.allclose(mask, 1.0 - (1.0 - scaled) ** gamma, atol=1e-6)
    inside = (scaled > 0.05) & (scaled < 0.95)
    assert inside.any() and torch.all(mask[inside] > scaled[inside])
    # Continuous at the threshold: just above it the mask is still small.
    near = (scaled > 0) & (scaled < 0.02)
    assert near.any() and torch.all(mask[near] < 0.05)


def test_setting_the_threshold_keeps_the_curve() -> None:
    model = _model()
    model.set_mask_threshold(0.5, 1.5)
    model.set_mask_threshold(0.6)
    assert model.cfg.mask_gamma == 1.5 and model.lrl.cfg.mask_gamma == 1.5


def test_inference_settings_change_but_what_the_network_is_built_from_does_not() -> None:
    model = _model()
    model.set_inference(blob_gain=4.0, brighten_cap=0.01)
    assert model.lrl.cfg.blob_gain == 4.0 and model.cfg.brighten_cap == 0.01
    for field in ("channels", "prior_sigma"):
        with pytest.raises(ValueError, match=field):
            model.set_inference(**{field: 2.0})
    assert model.cfg.blob_gain == 4.0


def test_the_curve_is_saved_with_the_checkpoint(tmp_path: Path) -> None:
    model = _model()
    model.set_mask_threshold(0.4, 1.5)
    save_checkpoint(model, tmp_path / "m.safetensors", name="test", version="1")
    loaded = load_checkpoint(tmp_path / "m.safetensors").model
    assert loaded.cfg.mask_threshold == 0.4 and loaded.cfg.mask_gamma == 1.5
    assert torch.equal(_run(loaded)[1], _run(model)[1])


def test_the_shipped_weights_bend_their_mask() -> None:
    # Chosen on the tuning half of the real-lesion marks (docs/model.md, "Third pass").
    cfg = load_model().model.cfg
    assert cfg.mask_threshold == 0.5 and cfg.mask_gamma == 1.5
