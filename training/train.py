"""Train ABPN on synthetic blemishes.

    python -m training.train --config training/configs/default.json --out runs/default [--resume]
        [--ship]

Seeded and resumable: `runs/NAME/last.pt` holds the weights, optimiser, step and RNG states and
is rewritten every `checkpoint_every` steps, so an interrupted run continues where it stopped.
`--ship` writes the final weights to model/weights/abpn-default.* (what the service loads).

Most steps train the LRL at its own scale (crop = working size, no pyramid): that is where the
learning is, and small crops make the steps cheap enough for a CPU. Every `pyramid_every`-th
step uses larger crops (`pyramid_scales`, twice the working size unless set) with the LRL at
the working size, so the refining module and the full-resolution losses see the pyramid too.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import random
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from model.net.abpn import ABPN
from model.net.config import ABPNConfig
from model.weights import (
    DEFAULT_WEIGHTS,
    file_sha256,
    load_model,
    save_checkpoint,
    sidecar_paths,
)
from training.data.dataset import TrainSampler
from training.losses import gradient_l1, mask_anchor, mask_loss, split_l1

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass
class TrainConfig:
    """Everything a training run depends on; the JSON config file holds these fields."""

    model: dict = field(default_factory=dict)
    seed: int = 0
    steps: int = 3000
    batch_size: int = 12
    crop_size: int = 128
    pyramid_every: int = 4
    pyramid_scales: list[int] = field(default_factory=lambda: [2])
    """How many times larger than the working size the pyramid steps' crops are, taken in
    turn: 2 is one pyramid level, 4 two, 8 three. Photos of 4K and more run three or four
    levels at inference (docs/model.md, tenth pass, for what training over several did)."""
    trainable: str = "all"
    """"all", or "refiner": only the pyramid's refining module learns (the LRL, and so the
    mask and the retouch at the working size, stay exactly as `init_weights` has them)."""
    lr: float = 2e-3
    lr_min: float = 1e-4
    warmup_steps: int = 100
    inside_weight: float = 4.0
    grad_weight: float = 0.5
    mask_weight: float = 1.0
    pos_weight: float = 8.0
    checkpoint_every: int = 200
    threads: int = 2
    init_weights: str | None = None
    """A safetensors checkpoint to start from (fine-tuning), relative to the repository root;
    its architecture must match `model`."""
    data: str = "synthetic"
    """"synthetic": portrait halves and textures (training.data.dataset); "faces": real face
    regions at the LRL's scale, photos without faces and the synthetic mix
    (training.data.face_samples)."""
    clean_skin_share: float = 0.08
    """Share of face samples cut from skin and left unpainted (empty target): the negatives
    that teach the mask not to fire on pores, freckles and moles ("faces" data only)."""
    crease_share: float = 0.0
    """Share of painted defects centred on a crease of the face
    (`training.data.face_samples.creases`; "faces" data only)."""
    anchor_weight: float = 0.0
    """Weight of `training.losses.mask_anchor`: the mask kept from rising above the
    `init_weights` network's away from the painted defects. 0 turns it off."""
    inference_mask_threshold: float | None = None
    """Mask threshold written into the exported checkpoint (chosen on a validation set); the
    weights do not depend on it, training uses the model config's."""
    inference_mask_gamma: float | None = None
    """Mask curve written with it (`ABPNConfig.mask_gamma`), chosen the same way."""
    inference: dict = field(default_factory=dict)
    """Further inference-only config fields written into the exported checkpoint (the red-blob
    prior, which training leaves off; see `ABPN.set_inference`)."""
    version: str = "1.0.0"

    @classmethod
    def load(cls, path: Path) -> TrainConfig:
        """Read a config file, refusing unknown keys."""
        data = json.loads(path.read_text())
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown training config keys: {sorted(unknown)}")
        return cls(**data)


def learning_rate(cfg: TrainConfig, step: int) -> float:
    """Linear warm-up, then cosine decay to lr_min."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    t = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr_min + 0.5 * (cfg.lr - cfg.lr_min) * (1 + math.cos(math.pi * min(t, 1.0)))


def training_loss(
    model: ABPN,
    cfg: TrainConfig,
    inp: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    lrl_size: int,
    teacher: ABPN | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The full objective on one batch; returns the loss and its parts for the progress bar.

    `teacher`, a frozen network, anchors the mask (`cfg.anchor_weight`)."""
    out = model(inp, lrl_size=lrl_size)
    low = out.result_low.shape[-2:]
    target_low = (
        F.interpolate(target, size=low, mode="area") if low != target.shape[-2:] else target
    )
    mask_low = F.interpolate(mask, size=low, mode="area") if low != mask.shape[-2:] else mask
    low_all, low_in = split_l1(out.result_low, target_low, mask_low)
    parts = {"low": low_all + cfg.inside_weight * low_in}
    if out.result.shape[-2:] != low:
        full_all, full_in = split_l1(out.result, target, mask)
        parts["full"] = full_all + cfg.inside_weight * full_in
    parts["grad"] = cfg.grad_weight * gradient_l1(out.result, target)
    parts["mask"] = cfg.mask_weight * mask_loss(out.mask_logits_low, mask_low, cfg.pos_weight)
    if teacher is not None:
        # The mask is the LRL's alone: the teacher needs neither its pyramid nor its own
        # downsampling of the batch.
        with torch.no_grad():
            taught = torch.cat([o.mask_logits for o in teacher.low_res(list(out.image_low))])
        parts["anchor"] = cfg.anchor_weight * mask_anchor(out.mask_logits_low, taught, mask_low)
    total = sum(parts.values())
    return total, {k: float(v.detach()) for k, v in parts.items()}


def _pyramid_key(scale: int) -> str:
    # The 2x sampler keeps its old name, so runs started before the scales existed resume.
    return "pyramid" if scale == 2 else f"pyramid{scale}"


def _samplers(cfg: TrainConfig, model_cfg: ABPNConfig) -> dict:
    """The LRL-scale sampler and one for each pyramid scale (`pyramid_scales`)."""
    if cfg.data not in ("synthetic", "faces"):
        raise ValueError(f"unknown training data {cfg.data!r}: 'synthetic' or 'faces'")
    if any(s < 2 or s & (s - 1) for s in cfg.pyramid_scales):
        raise ValueError(f"pyramid_scales must be powers of 2 from 2: {cfg.pyramid_scales}")

    def sampler(seed: int, scale: int):
        if cfg.data == "synthetic":
            return TrainSampler(seed=seed, crop_size=scale * cfg.crop_size)
        from training.data.face_samples import MixedSampler

        # Pyramid crops are larger at the same LRL scale, so their regions are too.
        return MixedSampler(
            seed,
            scale * cfg.crop_size,
            scale * model_cfg.lrl_size,
            p_clean_skin=cfg.clean_skin_share,
            p_crease=cfg.crease_share,
        )

    samplers = {"lrl": sampler(cfg.seed, 1)}
    for scale in cfg.pyramid_scales:
        samplers[_pyramid_key(scale)] = sampler(cfg.seed + scale - 1, scale)
    return samplers


def _trainable(model: ABPN, which: str) -> list[torch.nn.Parameter]:
    """The parameters `TrainConfig.trainable` names; the others are frozen."""
    if which == "all":
        return list(model.parameters())
    if which == "refiner":
        model.requires_grad_(False)
        model.pyramid.refiner.requires_grad_(True)
        return list(model.pyramid.refiner.parameters())
    raise ValueError(f"unknown trainable {which!r}: 'all' or 'refiner'")


def _save_state(
    path: Path, model: ABPN, opt: torch.optim.Optimizer, step: int, samplers: dict
) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "step": step,
            "samplers": {k: s.rng.bit_generator.state for k, s in samplers.items()},
            "torch_rng": torch.get_rng_state(),
        },
        tmp,
    )
    tmp.replace(path)


def train(cfg: TrainConfig, out_dir: Path, resume: bool) -> Path:
    """Run (or continue) a training run; returns the path of the final safetensors file."""
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")
    model = ABPN(ABPNConfig.from_dict(cfg.model))
    teacher = None
    if cfg.init_weights:
        model.load_state_dict(load_model(REPO_ROOT / cfg.init_weights).model.state_dict())
    if cfg.anchor_weight:
        if not cfg.init_weights:
            raise ValueError("anchor_weight needs init_weights: the network the mask is kept to")
        teacher = copy.deepcopy(model).eval().requires_grad_(False)
    params = _trainable(model, cfg.trainable)
    opt = torch.optim.Adam(params, lr=cfg.lr)
    samplers = _samplers(cfg, model.cfg)
    step = 0
    state_path = out_dir / "last.pt"
    if resume and state_path.is_file():
        state = torch.load(state_path, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        for name, sampler in samplers.items():
            sampler.rng.bit_generator.state = state["samplers"][name]
        torch.set_rng_state(state["torch_rng"])
        step = state["step"]
    model.train()
    log = (out_dir / "log.jsonl").open("a")
    started = time.perf_counter()
    bar = tqdm(total=cfg.steps, initial=step, desc="train", dynamic_ncols=True)
    while step < cfg.steps:
        pyramid_step = cfg.pyramid_every > 0 and step % cfg.pyramid_every == cfg.pyramid_every - 1
        if pyramid_step:
            scale = cfg.pyramid_scales[step // cfg.pyramid_every % len(cfg.pyramid_scales)]
            # Fewer crops as they grow: a 2x batch holds as many pixels as a working-size one.
            batch = samplers[_pyramid_key(scale)].batch(max(1, cfg.batch_size // (2 * scale)))
        else:
            batch = samplers["lrl"].batch(cfg.batch_size)
        for group in opt.param_groups:
            group["lr"] = learning_rate(cfg, step)
        loss, parts = training_loss(
            model, cfg, batch.input, batch.target, batch.mask, cfg.crop_size, teacher
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        bar.update(1)
        bar.set_postfix({k: f"{v:.4f}" for k, v in parts.items()})
        log.write(json.dumps({"step": step, "loss": float(loss.detach()), **parts}) + "\n")
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            _save_state(state_path, model, opt, step, samplers)
    bar.close()
    log.close()
    elapsed = time.perf_counter() - started
    final = out_dir / "abpn.safetensors"
    model.eval()
    if cfg.inference_mask_threshold is not None:
        model.set_mask_threshold(cfg.inference_mask_threshold, cfg.inference_mask_gamma)
    model.set_inference(**cfg.inference)
    save_checkpoint(
        model,
        final,
        name="abpn-default",
        version=cfg.version,
        extra={"training": {"steps": cfg.steps, "seed": cfg.seed, "config": asdict(cfg)}},
    )
    print(f"trained {cfg.steps} steps; this run took {elapsed / 60:.1f} min; weights: {final}")
    return final


def ship(weights: Path) -> None:
    """Copy a trained checkpoint (and its sidecars) to the package's default weights."""
    shutil.copyfile(weights, DEFAULT_WEIGHTS)
    config_path, hash_path = sidecar_paths(DEFAULT_WEIGHTS)
    shutil.copyfile(sidecar_paths(weights)[0], config_path)
    hash_path.write_text(f"{file_sha256(DEFAULT_WEIGHTS)}  {DEFAULT_WEIGHTS.name}\n")
    print(f"shipped {weights} -> {DEFAULT_WEIGHTS}")


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description="Train ABPN on synthetic blemishes.")
    parser.add_argument(
        "--config", type=Path, default=Path(__file__).parent / "configs/default.json"
    )
    parser.add_argument("--out", type=Path, default=Path("runs/default"))
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    parser.add_argument("--ship", action="store_true", help="install as the default weights")
    args = parser.parse_args(argv)
    final = train(TrainConfig.load(args.config), args.out, args.resume)
    if args.ship:
        ship(final)


if __name__ == "__main__":
    main()
