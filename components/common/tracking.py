"""Experiment tracking: W&B offline by default (no account needed), TensorBoard, or none."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from .extras import require


def report_to(kind: str, output_dir: str | Path) -> list[str]:
    """Prepare the environment for `kind` and return the value for TrainingArguments.report_to."""
    if kind == "none":
        return []
    require("wandb" if kind == "wandb" else "tensorboard", "tracking", f"report_to {kind}")
    if kind == "wandb":
        # Offline unless the user configured W&B themselves (WANDB_MODE / WANDB_API_KEY from a Secret).
        if not os.environ.get("WANDB_API_KEY"):
            os.environ.setdefault("WANDB_MODE", "offline")
        os.environ.setdefault("WANDB_DIR", str(output_dir))
        os.environ.setdefault("WANDB_SILENT", "true")
        return ["wandb"]
    return ["tensorboard"]


def check_wandb_key(key: str | None, verify=None) -> bool:
    """Before an online run: False without a key (W&B stays offline), True for a key W&B accepts;
    ValueError (one line) for one it refuses. `verify(key)` asks the server (tests replace it)."""
    if not key:
        return False
    require("wandb", "tracking", "report_to wandb")
    from wandb.sdk.lib.wbauth.validation import check_api_key

    problem = check_api_key(key)
    if problem is None:
        try:
            (verify or _ask_wandb)(key)
        except Exception as err:  # wandb raises its own types for auth and network errors
            problem = " ".join(f"{type(err).__name__}: {err}".split())[:300]
    if problem:
        hint = "fix the key, or drop --report-to wandb to log offline"
        raise ValueError(f"W&B refused WANDB_API_KEY: {problem} ({hint})")
    return True


def _ask_wandb(key: str) -> None:
    import wandb

    wandb.Api(api_key=key, timeout=15).viewer  # noqa: B018 (the request is the check)


@contextlib.contextmanager
def step_tracker(kind: str, output_dir: str | Path, name: str, config: dict):
    """An accelerate tracker (`.log(values, step=)`) for loops that are not a transformers Trainer (PPO),
    or None for `none`; finished on exit, which closes the W&B run or the TensorBoard writer."""
    if kind == "none":
        yield None
        return
    from accelerate import PartialState
    from accelerate.tracking import TensorBoardTracker, WandBTracker

    PartialState()  # the trackers log from the main process only and ask the state which one that is
    if kind == "wandb":
        report_to(kind, output_dir)
        tracker = WandBTracker(os.environ.get("WANDB_PROJECT", "kubeflow-rlhf"), name=name, reinit=True)
    else:
        tracker = TensorBoardTracker(name, str(Path(output_dir) / "runs"))
    tracker.start()
    tracker.store_init_configuration(config)
    try:
        yield tracker
    finally:
        tracker.finish()
