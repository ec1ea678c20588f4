"""Checkpoints by time as well as by steps (`checkpoint_every_minutes`), with a fake clock: each reading
of it is three minutes after the one before, so a 10-minute interval falls due at every fourth reading
(the clock is read when a stage starts, at each step's end and after each save)."""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import pytest
import torch

from kfrlhf.common import checkpoint, models
from kfrlhf.common.data_sources import write_jsonl
from kfrlhf.common.save_clock import SaveClock
from kfrlhf.pipelines.definitions import run_config as config
from tests.conftest import preference_rows, sft_rows


class FakeClock:
    """Seconds that advance by `step` at every reading."""

    def __init__(self, step: float):
        self.now, self.step = -step, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Far faster on 2 shared cores."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def test_a_save_falls_due_after_the_interval_and_a_save_restarts_it():
    clock = SaveClock(10, FakeClock(180))  # read at 0
    assert [clock.due() for _ in range(4)] == [False, False, False, True]  # 3, 6, 9, 12 minutes
    clock.saved()  # at 15
    assert [clock.due() for _ in range(4)] == [False, False, False, True]  # 18, 21, 24, 27
    off = SaveClock(0, FakeClock(3600))
    assert not any(off.due() for _ in range(10))


def test_every_training_stage_has_the_setting():
    from kfrlhf.pipelines.definitions.stages import DISTRIBUTED_STAGES

    loaded = config.load_config(None)
    for stage in DISTRIBUTED_STAGES:
        assert getattr(loaded, stage).checkpoint_every_minutes == 10, stage


def _section(name: str, **kw) -> dict:
    return {**dataclasses.asdict(getattr(config.load_config("tiny"), name)), **kw}


@pytest.fixture
def fake_clock(monkeypatch):
    """Every SaveClock a stage makes reads a FakeClock of 3-minute readings."""
    made = functools.partial(SaveClock, clock=FakeClock(180))
    monkeypatch.setattr(checkpoint, "SaveClock", made)
    import kfrlhf.ppo.trainer

    monkeypatch.setattr(kfrlhf.ppo.trainer, "SaveClock", made)


def names(root: Path) -> list[str]:
    return sorted((p.name for p in root.iterdir() if "-" in p.name), key=lambda n: int(n.split("-")[1]))


def test_an_hf_stage_saves_every_10_minutes_without_a_step_checkpoint(fake_clock, tmp_path):
    """SFT (the HF Trainer stages share HFGuard): saves at steps 4 and 8 (12 and 27 minutes), none by steps."""
    from kfrlhf.sft.stage import run

    rows = sft_rows(40)
    write_jsonl(rows[:36], tmp_path / "sft" / "train.jsonl")
    write_jsonl(rows[36:], tmp_path / "sft" / "eval.jsonl")
    sft = _section("sft", max_steps=8, save_steps=1000, logging_steps=100, eval_steps=1000, seq_length=32)
    run(sft=sft, sft_data=str(tmp_path / "sft"), output_dir=str(tmp_path / "out"))
    assert names(tmp_path / "out" / "checkpoints") == ["checkpoint-4", "checkpoint-8"]


def test_ppo_saves_every_10_minutes_without_a_step_checkpoint(fake_clock, tmp_path, tiny_lm_dir):
    from kfrlhf.ppo.stage import run

    write_jsonl([{"prompt": r["prompt"]} for r in preference_rows(16)], tmp_path / "prompts" / "train.jsonl")
    reward = tmp_path / "reward" / "model"
    models.load_reward_model(models.TINY_ENCODER).save_pretrained(reward)
    models.load_tokenizer(models.TINY_ENCODER).save_pretrained(reward)
    ppo = _section(
        "ppo", steps=8, save_every=0, batch_size=4, mini_batch_size=4, ppo_epochs=1, min_new_tokens=2, max_new_tokens=4
    )
    kwargs = dict(
        sft_model=str(tiny_lm_dir), reward_model=str(tmp_path / "reward"), prompt_data=str(tmp_path / "prompts")
    )
    run(ppo=ppo, **kwargs, output_dir=str(tmp_path / "out"))
    assert names(tmp_path / "out" / "checkpoints") == ["step-4", "step-8"]
