"""Shared fixtures: tiny models saved to disk, sample data, the ../shared folder."""

from pathlib import Path

import pytest

from kfrlhf import config, models, sample_data
from kfrlhf.stages import model_prompt

SHARED = Path(__file__).resolve().parents[2] / "shared"
TEMPLATE = config.DataConfig().template


@pytest.fixture(scope="session")
def tiny_lm_dir(tmp_path_factory) -> Path:
    """An untrained tiny-opt saved as a standalone model with its tokenizer."""
    path = tmp_path_factory.mktemp("tiny_lm")
    models.load_causal_lm(models.TINY_CAUSAL).save_pretrained(path)
    models.load_tokenizer(models.TINY_CAUSAL).save_pretrained(path)
    return path


def preference_rows(n: int, seed: int = 1) -> list[dict]:
    return [dict(r, prompt=model_prompt(r["prompt"], TEMPLATE)) for r in sample_data.preference_records(n, seed)]


def sft_rows(n: int, seed: int = 0) -> list[dict]:
    return [{"text": TEMPLATE.format(question=r["question"]) + r["response"]} for r in sample_data.sft_records(n, seed)]


@pytest.fixture(scope="session")
def reward_dir(tmp_path_factory) -> Path:
    """A tiny reward model trained on the sample preference (a few seconds)."""
    from kfrlhf.reward import train_reward

    out = tmp_path_factory.mktemp("reward")
    cfg = config.load_config("tiny").reward
    cfg.max_steps = 60
    rows = preference_rows(600)
    metrics = train_reward(cfg, rows[:500], rows[500:], out)
    return out / "model", metrics
