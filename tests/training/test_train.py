"""Training runs end to end, and an interrupted run resumed gives the same weights."""

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from model.weights import load_checkpoint
from training.train import TrainConfig, train


def _config(steps: int) -> TrainConfig:
    # Every step inside the warm-up: the learning rate then does not depend on `steps`, so a
    # 2-step run resumed to 4 must match a 4-step run exactly.
    return TrainConfig(
        model={"channels": 4, "max_channels": 8, "depth": 2, "lrl_size": 32},
        steps=steps,
        batch_size=2,
        crop_size=32,
        pyramid_every=2,
        warmup_steps=8,
        checkpoint_every=1,
        threads=1,
    )


def test_resumed_run_equals_uninterrupted_run(tmp_path: Path) -> None:
    straight = train(_config(4), tmp_path / "straight", resume=False)
    train(_config(2), tmp_path / "resumed", resume=False)
    resumed = train(_config(4), tmp_path / "resumed", resume=True)
    a = load_checkpoint(straight).model.state_dict()
    b = load_checkpoint(resumed).model.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    initial = load_checkpoint(train(_config(0), tmp_path / "untrained", resume=False))
    changed = initial.model.state_dict()
    assert any(not torch.equal(a[k], changed[k]) for k in a), "training changed no weight"
    log = (tmp_path / "straight" / "log.jsonl").read_text().splitlines()
    assert len(log) == 4


def test_anchored_run_needs_and_uses_a_starting_network(tmp_path: Path) -> None:
    start = train(_config(0), tmp_path / "start", resume=False)
    with pytest.raises(ValueError, match="init_weights"):
        train(replace(_config(2), anchor_weight=1.0), tmp_path / "no-init", resume=False)
    anchored = replace(_config(2), anchor_weight=1.0, init_weights=str(start))
    train(anchored, tmp_path / "anchored", resume=False)
    log = [
        json.loads(line) for line in (tmp_path / "anchored" / "log.jsonl").read_text().splitlines()
    ]
    assert len(log) == 2
    # The first step's network is the teacher itself, so its mask rises nowhere above it.
    assert log[0]["anchor"] == 0.0
