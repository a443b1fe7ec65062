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


def test_refiner_only_run_over_several_pyramid_levels(tmp_path: Path) -> None:
    start = train(_config(0), tmp_path / "start", resume=False)
    cfg = replace(
        _config(4),
        init_weights=str(start),
        trainable="refiner",
        pyramid_every=1,
        pyramid_scales=[2, 4],
        inference={"blob_gain": 3.0},
    )
    tuned = load_checkpoint(train(cfg, tmp_path / "tuned", resume=False))
    before = load_checkpoint(start).model.state_dict()
    after = tuned.model.state_dict()
    changed = {k for k in after if not torch.equal(after[k], before[k])}
    assert changed, "the refiner learned nothing"
    assert all(k.startswith("pyramid.refiner.") for k in changed), sorted(changed)
    # Every step is a pyramid step, so every one puts a loss on the full-size result.
    assert (tmp_path / "tuned" / "log.jsonl").read_text().count("full") == 4
    assert tuned.model.cfg.blob_gain == 3.0
    exported = json.loads((tmp_path / "tuned" / "abpn.json").read_text())
    assert exported["config"]["blob_gain"] == 3.0


def test_pyramid_scales_and_trainable_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="powers of 2"):
        train(replace(_config(1), pyramid_scales=[3]), tmp_path / "odd", resume=False)
    with pytest.raises(ValueError, match="trainable"):
        train(replace(_config(1), trainable="mask"), tmp_path / "mask", resume=False)
