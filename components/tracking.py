"""Experiment tracking: W&B offline by default (no account needed), TensorBoard, or none."""

from __future__ import annotations

import os
from pathlib import Path


def report_to(kind: str, output_dir: str | Path) -> list[str]:
    """Prepare the environment for `kind` and return the value for TrainingArguments.report_to."""
    if kind == "none":
        return []
    if kind == "wandb":
        # Offline unless the user configured W&B themselves (WANDB_MODE / WANDB_API_KEY from a Secret).
        if not os.environ.get("WANDB_API_KEY"):
            os.environ.setdefault("WANDB_MODE", "offline")
        os.environ.setdefault("WANDB_DIR", str(output_dir))
        os.environ.setdefault("WANDB_SILENT", "true")
        return ["wandb"]
    return ["tensorboard"]


def step_logger(kind: str, output_dir: str | Path, name: str, config: dict):
    """A `log_fn(step, metrics)` for loops that are not a transformers Trainer (PPO)."""
    if kind == "wandb":
        report_to(kind, output_dir)
        import wandb

        run = wandb.init(project=os.environ.get("WANDB_PROJECT", "kubeflow-rlhf"), name=name, config=config, reinit=True)
        return lambda step, metrics: run.log(metrics, step=step)
    if kind == "tensorboard":
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(Path(output_dir) / "runs" / name))

        def log(step, metrics):
            for key, value in metrics.items():
                writer.add_scalar(key, value, step)
            writer.flush()

        return log
    return None
