"""PPO checkpoints: checkpoints/step-N holds the adapter, value head, optimizer, KL coefficient, reward
moments, history and every rank's RNG states; rank 0 writes it, every rank resumes from it.

Under data parallelism the trainable weights, optimizer, KL coefficient and moments are the same on
every rank (their inputs are all-reduced); only the RNG streams (the samples) differ, so `rng.pt`
keeps one state per rank (`per_rank`) beside rank 0's. A resume on another number of processes
reseeds the ranks it has no state for.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch
from peft import set_peft_model_state_dict
from safetensors.torch import load_file, save_file

from kfrlhf.common import distributed
from kfrlhf.common.checkpoint import atomic_dir, rng_state, set_rng_state, write_config

from .normalization import RunningMoments

VALUE_HEAD = "value_head.safetensors"
PREFIX = "step"  # checkpoints/step-N


def save_value_head(value_head, path: Path) -> None:
    save_file({k: v.contiguous() for k, v in value_head.state_dict().items()}, str(path))


def save_checkpoint(
    root: Path,
    step: int,
    policy,
    value_head,
    optimizer,
    kl_ctl,
    moments: RunningMoments,
    length_rng: random.Random,
    history: list[dict],
    rollbacks: int,
    config: dict,
) -> Path:
    """Write root/step-N complete or not at all (temp dir, manifest, rename), on rank 0; every rank calls it."""
    per_rank = distributed.gather_objects(rng_state())
    path = root / f"{PREFIX}-{step}"
    if distributed.is_main():
        with atomic_dir(path, manifest=True) as tmp:
            policy.save_pretrained(str(tmp / "adapter"))
            save_value_head(value_head, tmp / VALUE_HEAD)
            torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
            torch.save(dict(per_rank[0], length=length_rng.getstate(), per_rank=per_rank), tmp / "rng.pt")
            state = {
                "step": step,
                "kl_coef": kl_ctl.value,
                "reward_moments": moments.state_dict(),
                "history": history,
                "rollbacks": rollbacks,
            }
            (tmp / "trainer_state.json").write_text(json.dumps(state, indent=1))
            write_config(tmp, config)
    distributed.barrier()
    return path


def load_checkpoint(
    path: Path, policy, value_head, optimizer, kl_ctl, moments: RunningMoments, length_rng: random.Random, seed: int
) -> dict:
    """Restore everything `save_checkpoint` wrote; returns its trainer_state.json (step, history, rollbacks)."""
    set_peft_model_state_dict(policy, load_file(str(path / "adapter" / "adapter_model.safetensors")))
    value_head.load_state_dict(load_file(str(path / VALUE_HEAD)))
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
    rng = torch.load(path / "rng.pt", weights_only=True)
    per_rank = rng.get("per_rank", [rng])
    rank = distributed.rank()
    if rank < len(per_rank):
        set_rng_state(per_rank[rank])
    else:
        torch.manual_seed(seed + rank)
    length_rng.setstate(rng["length"])
    state = json.loads((path / "trainer_state.json").read_text())
    kl_ctl.value = state["kl_coef"]
    moments.load_state_dict(state["reward_moments"])
    return state
