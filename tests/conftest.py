"""Shared fixtures: tiny models saved to disk, sample data, the upstream files the tests read (tests/upstream/), and
what stays outside the repository (../shared's tools and HH data, kubectl): `needs`/`need` skip a test without it."""

import os
import secrets
import shutil
from pathlib import Path

import pytest

from kfrlhf.common import models, sample_data
from kfrlhf.data.config import DataConfig
from kfrlhf.data.stage import model_prompt
from kfrlhf.pipelines.definitions import run_config as config

SHARED = Path(__file__).resolve().parents[2] / "shared"
# The upstream schemas the tests validate against, copied with their sources and licences (tests/upstream/README.md).
UPSTREAM = Path(__file__).resolve().parent / "upstream"
CRDS = UPSTREAM / "crds"
HH_FILE = SHARED / "data" / "hh-rlhf" / "harmless-base-test.jsonl.gz"
HH_DATA = "HH-RLHF's harmless-base test split (its terms: not copied into the repository)"
# In CI (.ci/run, CI=true) ../shared and kubectl are there: a test that needs them runs, and fails without them.
CI = os.environ.get("CI") == "true"
TEMPLATE = DataConfig().template


def missing(tool: str | Path, what: str) -> str | None:
    """Why `tool` (a path, or a command looked up on PATH) cannot be used, or None when it can."""
    if isinstance(tool, Path):
        return None if tool.exists() else f"{what} not found at {tool} (../shared beside the repository)"
    return None if shutil.which(tool) else f"{what} not found: `{tool}` is not on PATH"


def needs(tool: str | Path, what: str) -> pytest.MarkDecorator:
    """Mark a test (or a module: `pytestmark = needs(...)`) that uses something outside the repository: skipped
    with the reason on a clone without it, run in CI. For example needs(SHARED / "tools" / "x" / "x", "x")."""
    reason = missing(tool, what)
    return pytest.mark.skipif(bool(reason) and not CI, reason=reason or "")


def need(tool: str | Path, what: str) -> str:
    """The same inside a test or fixture: the tool as a string for subprocess argv, else skip (fail in CI)."""
    reason = missing(tool, what)
    if reason:
        (pytest.fail if CI else pytest.skip)(reason)
    return str(tool)


KUBECTL = "kubectl (with its kustomize, to render the overlays)"


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
