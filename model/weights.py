"""Checkpoints: safetensors weights + the config as JSON + a SHA-256 file, loaded strictly."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from model.net.abpn import ABPN
from model.net.config import ABPNConfig
from model.weights_info import WeightsInfo

WEIGHTS_DIR = Path(__file__).parent / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "abpn-default.safetensors"
RANDOM = "random"


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, corrupt or does not fit the network."""


@dataclass
class LoadedModel:
    """A network in eval mode on the CPU, and where its weights came from."""

    model: ABPN
    info: WeightsInfo


def sidecar_paths(path: Path) -> tuple[Path, Path]:
    """The config JSON and SHA-256 files that travel beside a .safetensors file."""
    return path.with_suffix(".json"), path.with_suffix(".sha256")


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_checkpoint(
    model: ABPN, path: str | Path, *, name: str, version: str, extra: dict | None = None
) -> WeightsInfo:
    """Write the weights, their config JSON and their SHA-256 beside each other."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata={"name": name, "version": version})
    config_path, hash_path = sidecar_paths(path)
    meta = {"name": name, "version": version, "config": model.cfg.to_dict(), **(extra or {})}
    config_path.write_text(json.dumps(meta, indent=2) + "\n")
    sha = file_sha256(path)
    hash_path.write_text(f"{sha}  {path.name}\n")
    return WeightsInfo(name=name, version=version, sha256=sha, path=str(path))


def check_state_dict(model: ABPN, state: dict[str, torch.Tensor], source: str) -> None:
    """Raise CheckpointError naming every missing key, unexpected key and shape mismatch."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = sorted(
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in set(expected) & set(state)
        if state[k].shape != expected[k].shape
    )
    problems = []
    if missing:
        problems.append("missing keys: " + ", ".join(missing))
    if unexpected:
        problems.append("unexpected keys: " + ", ".join(unexpected))
    if mismatched:
        problems.append("shape mismatches: " + "; ".join(mismatched))
    if problems:
        raise CheckpointError(f"{source} does not fit the network: " + " | ".join(problems))


def load_checkpoint(path: str | Path) -> LoadedModel:
    """Load weights written by `save_checkpoint`, checking the SHA-256 first and the keys and
    shapes strictly after."""
    path = Path(path)
    config_path, hash_path = sidecar_paths(path)
    for p in (path, config_path):
        if not p.is_file():
            raise CheckpointError(f"checkpoint file not found: {p}")
    sha = file_sha256(path)
    if hash_path.is_file():
        recorded = hash_path.read_text().split()[0]
        if recorded != sha:
            raise CheckpointError(
                f"{path} is corrupt: SHA-256 {sha} does not match {recorded} in {hash_path.name}"
            )
    try:
        meta = json.loads(config_path.read_text())
        cfg = ABPNConfig.from_dict(meta["config"])
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{config_path} is not a valid ABPN config: {exc}") from exc
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path} is not a readable safetensors file: {exc}") from exc
    model = ABPN(cfg)
    check_state_dict(model, state, str(path))
    model.load_state_dict(state, strict=True)
    model.eval()
    info = WeightsInfo(
        name=str(meta.get("name", path.stem)),
        version=str(meta.get("version", "unknown")),
        sha256=sha,
        path=str(path),
    )
    return LoadedModel(model=model, info=info)


def load_model(spec: str | Path | None = None) -> LoadedModel:
    """The network to serve: None -> the shipped default weights, "random" -> a seeded random
    initialisation (for tests and plumbing only), otherwise a path to a .safetensors file."""
    if spec is None or str(spec) == "":
        if not DEFAULT_WEIGHTS.is_file():
            raise CheckpointError(
                f"the shipped weights are missing ({DEFAULT_WEIGHTS}); train them with "
                "`python -m training.train` or pass a weights path"
            )
        return load_checkpoint(DEFAULT_WEIGHTS)
    if str(spec) == RANDOM:
        torch.manual_seed(0)
        model = ABPN().eval()
        return LoadedModel(model, WeightsInfo("abpn-random", "0", RANDOM, None))
    return load_checkpoint(spec)
