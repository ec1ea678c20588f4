"""Divergence guard: a NaN (loss or reward) or a KL/reward above its hard limit stops the stage with
"<stage> diverged at step N: <problem>; last good checkpoint: <path>", saves nothing of that
step, and the last good checkpoint stays complete and resumable."""

from __future__ import annotations

import json
import re

import pytest
import torch
import trl

from kfrlhf.common.checkpoint import Diverged, is_complete, latest_complete
from kfrlhf.ppo import losses
from kfrlhf.ppo.trainer import PPODivergence, run_ppo
from kfrlhf.sft.stage import train_sft
from tests.conftest import sft_rows
from tests.test_ppo_trainer import small_cfg, target_fraction
from tests.test_resume import one_thread  # noqa: F401  (autouse: one torch thread, far faster on shared cores)
from tests.test_sft import _cfg as sft_cfg
from tests.word_task import PROMPTS, tiny_lm, tiny_tokenizer


def _counting(reward_fn, calls: list):
    def fn(prompts, responses):
        calls.append(1)
        return reward_fn(prompts, responses, len(calls))

    return fn


def nan_loss_from(step: int, calls: list):
    """value_loss wrapper that turns the PPO loss into NaN from rollout `step` on."""
    value_loss = losses.value_loss

    def patched(*args, **kw):
        loss, clipfrac = value_loss(*args, **kw)
        return (loss * float("nan") if len(calls) >= step else loss), clipfrac

    return patched


PPO_CASES = {
    "nan reward": (
        dict(),
        lambda p, r, n: target_fraction(p, r) * (float("nan") if n == 5 else 1),
        5,
        "reward is NaN/inf for 16 of 16 responses",
    ),
    "reward limit": (
        dict(reward_limit=10.0),
        lambda p, r, n: target_fraction(p, r) + (100 if n == 5 else 0),
        5,
        r"mean reward 10[01](\.\d+)? > reward_limit 10\.0",
    ),
    "exploding kl": (
        dict(kl_limit=1e-4),
        lambda p, r, n: target_fraction(p, r),
        2,
        r"mean KL [\d.e-]+ > kl_limit 0\.0001",
    ),
    "nan loss": (dict(), lambda p, r, n: target_fraction(p, r), 3, r"loss is nan \(policy [\d.e-]+, value nan\)"),
}


@pytest.mark.parametrize("case", PPO_CASES)
def test_ppo_stops_and_keeps_the_last_good_checkpoint(case, tmp_path, monkeypatch):
    overrides, reward_fn, step, problem = PPO_CASES[case]
    calls: list = []
    if case == "nan loss":
        monkeypatch.setattr(losses, "value_loss", nan_loss_from(step, calls))
    tok = tiny_tokenizer()
    cfg = small_cfg(steps=8, save_every=1, learning_rate=3e-2, **overrides)
    with pytest.raises(PPODivergence) as err:
        run_ppo(cfg, tiny_lm(tok), tok, PROMPTS, _counting(reward_fn, calls), output_dir=str(tmp_path))
    last_good = tmp_path / "checkpoints" / f"step-{step - 1}"
    assert re.fullmatch(
        rf"PPO diverged at step {step}: {problem}; last good checkpoint: {re.escape(str(last_good))}", str(err.value)
    ), str(err.value)
    assert latest_complete(tmp_path / "checkpoints", "step") == last_good and is_complete(last_good)
    assert not (tmp_path / "adapter").exists()

    # Intact and loadable: a sane run on the same output resumes from it and finishes.
    monkeypatch.undo()
    cfg = small_cfg(steps=step, save_every=1)
    result = run_ppo(cfg, tiny_lm(tok), tok, PROMPTS, target_fraction, output_dir=str(tmp_path))
    assert len(result["history"]) == step and all(torch.isfinite(torch.tensor(h["reward"])) for h in result["history"])


@pytest.mark.parametrize(
    "logging_steps, step, problem", [(1, 6, "loss is nan"), (100, 8, "non-finite weights after the update")]
)
def test_sft_stops_on_nan_and_keeps_the_last_good_checkpoint(logging_steps, step, problem, tmp_path, monkeypatch):
    """From step 6 on the loss is NaN: caught in the logs, or before the next save (step 8) when nothing is logged."""
    compute_loss = trl.SFTTrainer.compute_loss

    def nan_from_step_6(self, model, inputs, return_outputs=False, **kw):
        out = compute_loss(self, model, inputs, return_outputs, **kw)
        if not model.training or self.state.global_step < 5:
            return out
        return (out[0] * float("nan"), out[1]) if return_outputs else out * float("nan")

    monkeypatch.setattr(trl.SFTTrainer, "compute_loss", nan_from_step_6)
    rows = sft_rows(120)
    cfg = sft_cfg(max_steps=12, save_steps=4, logging_steps=logging_steps, eval_steps=100, seq_length=64, batch_size=4)
    with pytest.raises(Diverged) as err:
        train_sft(cfg, rows[:100], rows[100:], tmp_path)
    last_good = tmp_path / "checkpoints" / "checkpoint-4"
    assert str(err.value) == f"SFT diverged at step {step}: {problem}; last good checkpoint: {last_good}"
    assert latest_complete(tmp_path / "checkpoints", "checkpoint") == last_good and is_complete(last_good)
    assert not (tmp_path / "adapter").exists() and not (tmp_path / "metrics.json").exists()

    monkeypatch.undo()
    assert torch.isfinite(torch.tensor(train_sft(cfg, rows[:100], rows[100:], tmp_path)["sft_eval_loss"]))


def test_ppo_rolls_back_at_half_the_learning_rate(tmp_path):
    """A one-off NaN reward at step 5, max_rollbacks=1: back to step-3 (before the update that made step 5's policy)."""
    calls: list = []
    reward_fn = _counting(lambda p, r, n: target_fraction(p, r) * (float("nan") if n == 5 else 1), calls)
    tok = tiny_tokenizer()
    cfg = small_cfg(steps=8, save_every=1, max_rollbacks=1)
    result = run_ppo(cfg, tiny_lm(tok), tok, PROMPTS, reward_fn, output_dir=str(tmp_path))
    assert [h["step"] for h in result["history"]] == list(range(1, 9)) and len(calls) == 8 + 2  # steps 4, 5 redone
    last = tmp_path / "checkpoints" / "step-8"
    assert json.loads((last / "trainer_state.json").read_text())["rollbacks"] == 1
    lrs = {g["lr"] for g in torch.load(last / "optimizer.pt", weights_only=True)["param_groups"]}
    assert lrs == {cfg.learning_rate / 2}


def test_ppo_rollbacks_are_bounded(tmp_path):
    """NaN rewards from the 5th call on: two rollbacks (to step-3, then step-2), then the error."""
    reward_fn = _counting(lambda p, r, n: target_fraction(p, r) * (float("nan") if n >= 5 else 1), [])
    tok = tiny_tokenizer()
    with pytest.raises(PPODivergence, match=r"^PPO diverged at step 3: reward is NaN.*checkpoints/step-2$"):
        run_ppo(
            small_cfg(steps=8, save_every=1, max_rollbacks=2),
            tiny_lm(tok),
            tok,
            PROMPTS,
            reward_fn,
            output_dir=str(tmp_path),
        )
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-1", "step-2"]
