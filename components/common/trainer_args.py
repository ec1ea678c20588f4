"""The TrainingArguments that the HF Trainer stages (SFT, reward, DPO, KTO) share, from their configs' common fields,
and the run that the adapter-training preference stages (DPO, KTO) share around their TRL trainer."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import torch

from . import distributed
from .checkpoint import atomic_write_text, checkpoint_root, hf_checkpoint_args, save_adapter, train_resumable
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


def split_prompt(prompt: str) -> tuple[str, str]:
    """A model-format prompt without its trailing space, and that space, which goes to the answers ("Answer:" +
    " Great"): BPE merges it into the answer's first token, as in the SFT text, so the tokenized prompt stays a
    prefix of prompt + answer."""
    stripped = prompt.rstrip()
    return stripped, prompt[len(stripped) :]


def train_adapter(trainer, name: str, cfg, tokenizer, output_dir: Path, eval_keys: dict[str, str]) -> dict:
    """Evaluate, train (resumable; `name` as the console says it), evaluate again; rank 0 writes the adapter and
    tokenizer to `output_dir/adapter` and the metrics to `output_dir/metrics.json`. `eval_keys`: the trainer's
    eval logs -> our metric names (`_before` added for the first evaluation)."""

    def evaluate(suffix: str = "") -> dict:
        logs = trainer.evaluate()
        return {metric + suffix: logs[key] for key, metric in eval_keys.items() if key in logs}

    before = evaluate("_before")
    train_resumable(trainer, name, dataclasses.asdict(cfg))
    metrics = {**before, **evaluate(), **train_loss_ends(trainer, name.lower())}
    if not distributed.is_main():  # rank 0 writes the outputs
        return metrics
    save_adapter(trainer.model, tokenizer, output_dir / "adapter")
    atomic_write_text(output_dir / "metrics.json", json.dumps(metrics, indent=2))
    return metrics
