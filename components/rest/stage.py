"""The ReST stage's two steps on directories, as the KFP components call them: `run_grow` (sample and
score, `grow.py`) and `run_improve` (filter and fine-tune, `improve.py`). ReST is the one stage with two
tasks per round, so it has one entry function per step; `iterations` is the count the pipeline was built
with (`unrolled_config` refuses a `rest` section that differs)."""

from __future__ import annotations

import json
from pathlib import Path

from kfrlhf.common.checkpoint import release_checkpoints
from kfrlhf.common.data_sources import read_split
from kfrlhf.common.models import RewardScorer, load_tokenizer

from .config import unrolled_config
from .grow import SAMPLES, grow, load_policy
from .improve import improve


def run_grow(
    rest: dict,
    iteration: int,
    iterations: int,
    sft_model: str,
    adapter: str | None,
    reward_model: str,
    prompt_data: str,
    output_dir: str,
) -> dict:
    """The stage on directories; `iterations` is the count the pipeline was built with."""
    cfg = unrolled_config(rest, iterations)
    policy = load_policy(sft_model, adapter)
    tokenizer = load_tokenizer(sft_model, padding_side="left")
    scorer = RewardScorer(str(Path(reward_model) / "model"), batch_size=cfg.generation_batch_size)
    prompts = [r["prompt"] for r in read_split(prompt_data, "train")]
    return grow(cfg, iteration, policy, tokenizer, scorer, prompts, output_dir)


def run_improve(
    rest: dict,
    iteration: int,
    iterations: int,
    sft_model: str,
    adapter: str | None,
    samples: str,
    output_dir: str,
    report_to: str = "none",
) -> dict:
    """The stage on directories: `samples` is the Grow step's dataset."""
    cfg = unrolled_config(rest, iterations)
    rows = [json.loads(line) for line in (Path(samples) / SAMPLES).read_text().splitlines()]
    metrics = improve(cfg, iteration, sft_model, adapter, rows, output_dir, report_to)
    release_checkpoints(Path(output_dir))
    return metrics
