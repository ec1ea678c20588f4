"""Shared fixtures: tiny models saved to disk, sample data, the ../shared folder."""

import secrets
from pathlib import Path

import pytest

from kfrlhf.common import models, sample_data
from kfrlhf.data.config import DataConfig
from kfrlhf.data.stage import model_prompt
from kfrlhf.pipelines.definitions import run_config as config

SHARED = Path(__file__).resolve().parents[2] / "shared"
TEMPLATE = DataConfig().template


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
    from kfrlhf.reward.stage import train_reward

    out = tmp_path_factory.mktemp("reward")
    cfg = config.load_config("tiny").reward
    cfg.max_steps = 60
    rows = preference_rows(600)
    metrics = train_reward(cfg, rows[:500], rows[500:], out)
    return out / "model", metrics


SECRET_NAMES = ("HF_TOKEN", "WANDB_API_KEY", "KFP_TOKEN", "ACTIVELOOP_TOKEN")


@pytest.fixture
def fake_secrets(monkeypatch) -> dict[str, str]:
    values = {name: f"sekret-{name.lower()}-{secrets.token_hex(12)}" for name in SECRET_NAMES}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("WANDB_MODE", "offline")  # a key is set: stay offline anyway
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for name in ("WANDB_DIR", "WANDB_SILENT"):  # kfrlhf.tracking sets these: restore them afterwards
        monkeypatch.delenv(name, raising=False)
    return values


def assert_clean(text: str, values: dict[str, str], where: str) -> None:
    leaked = [name for name, value in values.items() if value in text]
    assert not leaked, f"{', '.join(leaked)} leaked into {where}"


def assert_tree_clean(root: Path, values: dict[str, str]) -> int:
    files = [p for p in root.rglob("*") if p.is_file()]
    for path in files:
        assert_clean(path.read_bytes().decode("utf-8", "replace"), values, str(path))
    return len(files)
