"""The TrainingArguments that the HF Trainer stages (SFT, reward, DPO) share, from their configs' common fields."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from . import distributed
from .checkpoint import checkpoint_root, hf_checkpoint_args
from .config import ConfigError
from .tracking import report_to as tracking_report_to

log = logging.getLogger(__name__)


def bf16_supported() -> bool:
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def use_bf16(cfg, stage: str) -> bool:
    """`cfg.bf16`, falling back to fp32 with a warning where no GPU supports bf16 (on a CPU bf16 autocast
    is ~30x slower than fp32, and the HF Trainer refuses it)."""
    if cfg.bf16 and not bf16_supported():
        log.warning("%s.bf16: this machine has no GPU with bf16 support; training in fp32", stage)
        return False
    return cfg.bf16


def per_process_batch(batch_size: int, stage: str) -> int:
    """`batch_size` is the global batch: each of the launched processes takes its share."""
    world = distributed.world_size()
    if batch_size % world:
        raise ConfigError(f"{stage}.batch_size ({batch_size}) must be divisible by the {world} processes")
    return batch_size // world


def trainer_args(cfg, output_dir: Path, report_to: str, run_name: str) -> dict:
    """Keyword arguments for TRL's SFTConfig / RewardConfig / DPOConfig; `cfg` is our config of that stage.
    Under data parallelism the global batch (`batch_size`) is split across the processes, and only
    rank 0 reports to the tracker."""
    batch = per_process_batch(cfg.batch_size, run_name)
    return dict(
        output_dir=str(checkpoint_root(output_dir)),
        max_steps=cfg.max_steps,
        per_device_train_batch_size=batch,
        per_device_eval_batch_size=batch,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        gradient_checkpointing=cfg.gradient_checkpointing,
        learning_rate=cfg.learning_rate,
        eval_strategy="steps",
        eval_steps=cfg.eval_steps,
        logging_steps=cfg.logging_steps,
        bf16=use_bf16(cfg, run_name),
        seed=cfg.seed,
        data_seed=cfg.seed,
        report_to=tracking_report_to(report_to if distributed.is_main() else "none", output_dir),
        use_cpu=not torch.cuda.is_available(),  # on CPUs accelerate sets up gloo data parallelism only with it
        run_name=run_name,
        **hf_checkpoint_args(cfg.save_steps),
    )


def train_loss_ends(trainer, stage: str) -> dict:
    """The first and last logged training loss, as `<stage>_train_loss_first` / `_last`; none when
    `max_steps` < `logging_steps` logged no loss (KFP metrics must be finite numbers)."""
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {f"{stage}_train_loss_first": losses[0], f"{stage}_train_loss_last": losses[-1]} if losses else {}
