"""Surviving preemption and divergence: complete-or-absent checkpoints, resume, SIGTERM, hard stops.

A checkpoint directory counts only when its `COMPLETE` manifest (every file's relative path
and size, written last) is there and every listed file has that size: a directory cut short
by a kill (no manifest, a missing or truncated file) is skipped and removed on the next start.
Final artifacts are written under a temporary name and renamed when complete.

Each checkpoint stores the stage's config (`config.json`); a stage started again on the same
output refuses a checkpoint written under a different config (`CheckpointMismatch`, one line
naming the changed fields), so a task retried with changed parameters never mixes two runs. What
a rerun may change (`RESUME_SAFE`: how long to train, how often to save/log/evaluate, the hard
limits, the learning rate) is left out of the comparison.

SIGTERM (what Kubernetes sends before evicting a pod) does not kill a training stage: the
current step finishes, a checkpoint is saved and the process exits with 143 (128 + SIGTERM).
That save may be cut short on a cluster, so checkpoints also come by time (`SaveClock`).
The HF Trainer stages (SFT, reward, DPO) get all of this through `train_resumable`; PPO uses the
pieces directly.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import random
import re
import shutil
import signal
import threading
from pathlib import Path

import numpy as np
import torch
from transformers import TrainerCallback

from . import distributed
from .atomic import MANIFEST as MANIFEST  # the stages import these from here too
from .atomic import atomic_dir, is_complete, write_manifest
from .atomic import atomic_file as atomic_file
from .atomic import atomic_write_text as atomic_write_text
from .save_clock import SaveClock

log = logging.getLogger(__name__)

PREEMPTED_EXIT = 143
HF_PREFIX = "checkpoint"  # HF Trainer names its checkpoints checkpoint-<step>


class Diverged(RuntimeError):
    """A stage stopped: a loss, reward or KL is NaN/inf or above its hard limit."""

    def __init__(self, stage: str, step: int, problem: str, last_good: Path | None):
        super().__init__(f"{stage} diverged at step {step}: {problem}; last good checkpoint: {last_good or 'none'}")
        self.last_good = last_good


class CheckpointMismatch(RuntimeError):
    """The checkpoint to resume from was written under a different config."""


class Preempted(SystemExit):
    """SIGTERM arrived: the step finished, a checkpoint was saved; uncaught, the process exits 143."""

    def __init__(self, stage: str, step: int, saved: Path | None):
        super().__init__(PREEMPTED_EXIT)
        self.message = f"{stage} stopped by SIGTERM after step {step}; checkpoint: {saved or 'none'}"
        log.warning(self.message)


# Where a stage keeps its checkpoints. On a cluster the output artifact is pod-local until the
# stage succeeds, so a preempted pod would lose them: there RLHF_CHECKPOINT_ROOT points at the
# PVC and the artifact's local path (unique per run and task, the same on a retry) names the folder.
# `rlhf run` gives every run new artifact paths, so it keeps only the last RLHF_CHECKPOINT_KEY_PARTS
# parts (task/output) under a root named by the config's hash: a rerun resumes the stage that died.
CHECKPOINT_ROOT_ENV = "RLHF_CHECKPOINT_ROOT"
CHECKPOINT_KEY_PARTS_ENV = "RLHF_CHECKPOINT_KEY_PARTS"


def checkpoint_root(output_dir: Path) -> Path:
    external = os.environ.get(CHECKPOINT_ROOT_ENV)
    if not external:
        return Path(output_dir) / "checkpoints"
    parts = Path(output_dir).resolve().parts[1:]
    keep = int(os.environ.get(CHECKPOINT_KEY_PARTS_ENV, "0"))  # 0: the whole path
    return Path(external).joinpath(*(parts[-keep:] if keep else parts))


def release_checkpoints(output_dir: Path) -> None:
    """After success: drop checkpoints kept outside the artifact (inside it they are part of the output).
    Under data parallelism rank 0 does it, as it writes the outputs."""
    if os.environ.get(CHECKPOINT_ROOT_ENV) and distributed.is_main():
        shutil.rmtree(checkpoint_root(output_dir), ignore_errors=True)


# --- complete-or-absent files and directories (`atomic`; a PEFT adapter here: it needs its model) ---------


def save_adapter(model, tokenizer, path: Path) -> None:
    """A PEFT adapter with its tokenizer, complete or absent (what merge reads)."""
    with atomic_dir(path) as tmp:
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))


def _checkpoints(root: Path, prefix: str) -> list[tuple[int, Path]]:
    """`root/<prefix>-<step>` directories, newest first."""
    pattern = re.compile(rf"{re.escape(prefix)}-(\d+)")
    found = [(int(m.group(1)), p) for p in Path(root).glob(f"{prefix}-*") if (m := pattern.fullmatch(p.name))]
    return sorted((step, p) for step, p in found if p.is_dir())[::-1]


def latest_complete(root: Path | None, prefix: str, before: int | None = None) -> Path | None:
    """The newest complete checkpoint under `root` (of a step < `before`), or None."""
    if root is None or not Path(root).is_dir():
        return None
    earlier = [p for step, p in _checkpoints(root, prefix) if before is None or step < before]
    return next((p for p in earlier if is_complete(p)), None)


def remove_after(root: Path, prefix: str, step: int) -> None:
    """Delete the checkpoints of steps after `step` (a rollback abandons them)."""
    for later, path in _checkpoints(root, prefix):
        if later > step:
            shutil.rmtree(path)


def remove_incomplete(root: Path, prefix: str) -> None:
    """Delete what a kill left behind: temporary directories and checkpoints without a valid manifest."""
    if not Path(root).is_dir():
        return
    temporary = [p for p in Path(root).glob(".*") if p.suffix in (".tmp", ".old")]  # see atomic_dir
    leftovers = temporary + [p for _, p in _checkpoints(root, prefix) if not is_complete(p)]
    for path in leftovers:
        log.warning("removing incomplete checkpoint %s", path)
        shutil.rmtree(path) if path.is_dir() else path.unlink()


# --- the config a checkpoint belongs to ---------------------------------------------------------------

CONFIG_FILE = "config.json"
RESUME_SAFE = frozenset(
    {"steps", "max_steps", "save_every", "save_steps", "checkpoint_every_minutes", "logging_steps", "eval_steps"}
    | {"kl_limit", "reward_limit", "max_rollbacks", "learning_rate", "distributed"}
)


def _compared(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in RESUME_SAFE}


def resume_key(run_config: dict) -> str:
    """The key a run's checkpoints are kept under: its config, one section per stage, without what a rerun may
    change (RESUME_SAFE), so a rerun with more sft.max_steps resumes SFT instead of starting again."""
    kept = {k: _compared(v) if isinstance(v, dict) else v for k, v in run_config.items()}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:12]


def write_config(directory: Path, config: dict) -> None:
    """Store the stage's config (before the manifest, which lists it)."""
    (Path(directory) / CONFIG_FILE).write_text(json.dumps(config, indent=1, sort_keys=True, default=str))


def check_config(path: Path | None, config: dict, stage: str) -> None:
    """Raise CheckpointMismatch when checkpoint `path` stores a config other than `config` (one written
    before checkpoints stored their config is taken as it is)."""
    if path is None or not (Path(path) / CONFIG_FILE).is_file():
        return
    stored = _compared(json.loads((Path(path) / CONFIG_FILE).read_text()))
    current = _compared(json.loads(json.dumps(config, default=str)))
    changed = sorted(k for k in stored.keys() | current.keys() if stored.get(k) != current.get(k))
    if changed:
        raise CheckpointMismatch(
            f"{stage}: checkpoint {path} was written under a different config ({', '.join(changed)} changed); "
            "rerun with that config, or use a new output (or delete the checkpoints) to start over"
        )


# --- SIGTERM ---------------------------------------------------------------------------------------


class StopOnSigterm(contextlib.AbstractContextManager):
    """Inside the block, SIGTERM (or SIGHUP: the terminal closed) only sets `requested`; the training loop
    saves and stops at the step's end."""

    requested = False

    def __enter__(self):
        self._previous = None
        if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
            self._previous = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGTERM, signal.SIGHUP)}
        return self

    def _handle(self, signum, frame):
        self.requested = True
        log.warning(f"{signal.Signals(signum).name}: finishing the current step, then saving a checkpoint")

    def __exit__(self, *exc):
        for sig, handler in (self._previous or {}).items():
            signal.signal(sig, handler)
        return False


# --- RNG state (the HF Trainer saves its own) --------------------------------------------------------


def rng_state() -> dict:
    """Python, numpy, torch (and CUDA) RNG states in types `torch.load(weights_only=True)` accepts."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    numpy_state = (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached)
    state = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# --- HF Trainer stages -------------------------------------------------------------------------------


def hf_checkpoint_args(save_steps: int) -> dict:
    """TrainingArguments for checkpoints every `save_steps` and NaN losses that reach the logs."""
    # Two kept: the rotation runs before our manifest is written, so the previous complete one survives.
    return dict(save_strategy="steps", save_steps=save_steps, save_total_limit=2, logging_nan_inf_filter=False)


class HFGuard(TrainerCallback):
    """Saves and stops on SIGTERM, saves every `checkpoint_every_minutes` as well as every `save_steps`,
    marks saved checkpoints complete, stops on NaN/inf."""

    def __init__(self, stage: str, stop: StopOnSigterm, root: Path, params: list, config: dict):
        self.stage, self.stop, self.root, self.params, self.config = stage, stop, root, params, config
        self.stopping = False  # a SIGTERM seen by any rank: they all save and stop at the same step
        self.save_clock = SaveClock(config["checkpoint_every_minutes"])

    def diverged(self, step: int, problem: str) -> Diverged:
        return Diverged(self.stage, step, problem, latest_complete(self.root, HF_PREFIX))

    def on_step_end(self, args, state, control, **kwargs):
        self.stopping = distributed.any_process(self.stop.requested)
        if self.stopping:
            control.should_save = control.should_training_stop = True
        elif self.save_clock.due():
            control.should_save = True
        if control.should_save:  # by steps (the Trainer's own callback ran first), by time or on SIGTERM
            self.save_clock.saved()
        # Never save a diverged step: a NaN/inf loss leaves non-finite weights behind.
        if control.should_save and not all(torch.isfinite(p).all() for p in self.params):
            raise self.diverged(state.global_step, "non-finite weights after the update")

    def on_log(self, args, state, control, logs=None, **kwargs):
        for key in ("loss", "eval_loss", "grad_norm"):
            value = (logs or {}).get(key)
            if value is not None and not math.isfinite(value):
                raise self.diverged(state.global_step, f"{key} is {value}")

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            write_config(self.root / f"{HF_PREFIX}-{state.global_step}", self.config)
            write_manifest(self.root / f"{HF_PREFIX}-{state.global_step}")


def forget_evaluation_prepare(trainer) -> None:
    """Let `trainer.train()` wrap a model that `trainer.evaluate()` has already seen. accelerate (since
    1.14, its PR 3977) marks a model prepared for evaluation as prepared, and then training's prepare
    leaves it unwrapped: no DistributedDataParallel, so every process trained its own copy on its share
    of the data and rank 0 saved half a run (measured: 2 ranks ended with different adapters)."""
    if trainer.model_wrapped is trainer.model and getattr(trainer.model, "_is_accelerate_prepared", False):
        del trainer.model._is_accelerate_prepared


def train_resumable(trainer, stage: str, config: dict) -> None:
    """`trainer.train()`, resumed from the newest complete checkpoint in its output_dir (written under the
    same `config`, see `check_config`); exits 143 on SIGTERM."""
    root = Path(trainer.args.output_dir)
    if distributed.is_main():
        remove_incomplete(root, HF_PREFIX)
    distributed.barrier()
    resume = latest_complete(root, HF_PREFIX)
    check_config(resume, config, stage)
    if resume is not None:
        log.warning("%s: resuming from %s", stage, resume)
    forget_evaluation_prepare(trainer)
    params = [p for p in trainer.model.parameters() if p.requires_grad]
    with StopOnSigterm() as stop:
        guard = HFGuard(stage, stop, root, params, config)
        trainer.add_callback(guard)
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    if guard.stopping:
        raise Preempted(stage, trainer.state.global_step, latest_complete(root, HF_PREFIX))
