"""Checkpoints: round trip, strict key checks, corruption."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from model.engine import RetouchEngine
from model.net.abpn import ABPN
from model.net.config import ABPNConfig
from model.weights import CheckpointError, load_checkpoint, load_model, save_checkpoint


def test_round_trip_preserves_weights_and_config(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = ABPN(ABPNConfig(channels=8, depth=2, lrl_size=96))
    info = save_checkpoint(model, tmp_path / "m.safetensors", name="test", version="1.2")
    loaded = load_checkpoint(tmp_path / "m.safetensors")
    assert loaded.model.cfg == model.cfg
    assert loaded.info.sha256 == info.sha256 and loaded.info.version == "1.2"
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[k], v)
    image = np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    a = RetouchEngine(model).retouch(image).image
    b = RetouchEngine(loaded.model).retouch(image).image
    assert np.array_equal(a, b)


def test_wrong_checkpoint_names_the_keys(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    save_checkpoint(ABPN(ABPNConfig(channels=8, depth=2)), path, name="t", version="1")
    meta = json.loads(path.with_suffix(".json").read_text())
    meta["config"]["depth"] = 3  # a deeper network has stages this checkpoint lacks
    path.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"missing keys: .*lrl\.down\.2") as err:
        load_checkpoint(path)
    assert "shape mismatches" in str(err.value)


def test_unexpected_keys_are_named(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    path = tmp_path / "m.safetensors"
    save_checkpoint(ABPN(ABPNConfig(channels=8, depth=2)), path, name="t", version="1")
    state = load_file(str(path))
    state["extra.weight"] = torch.zeros(2)
    save_file(state, str(path))
    path.with_suffix(".sha256").unlink()
    with pytest.raises(CheckpointError, match=r"unexpected keys: extra\.weight"):
        load_checkpoint(path)


def test_corrupt_file_fails_the_hash_check(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    save_checkpoint(ABPN(ABPNConfig(channels=8, depth=2)), path, name="t", version="1")
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(path)


def test_missing_checkpoint_and_random_spec(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "absent.safetensors")
    loaded = load_model("random")
    assert loaded.info.sha256 == "random" and isinstance(loaded.model, ABPN)
