"""The PPO loop on a tiny random OPT with a word-level tokenizer and a known reward."""

import pytest
import torch
from peft import PeftModel

from kfrlhf.common.sampling import generate
from kfrlhf.ppo.config import PPOConfig
from kfrlhf.ppo.rollout import score
from kfrlhf.ppo.trainer import PHASES, PPODivergence, make_policy, run_ppo
from tests import word_task
from tests.word_task import PROMPTS, tiny_lm, tiny_tokenizer


def target_fraction(prompts: list[str], responses: list[str]) -> torch.Tensor:
    """Reward: the fraction of response words that are "good"."""
    return word_task.target_fraction(responses)


def small_cfg(**kw) -> PPOConfig:
    base = dict(
        steps=30,
        batch_size=16,
        mini_batch_size=4,
        ppo_epochs=2,
        learning_rate=3e-3,
        min_new_tokens=4,
        max_new_tokens=8,
        max_prompt_length=16,
        init_kl_coef=0.05,
        target_kl=0.01,
        kl_horizon=200,
        lora_r=8,
        lora_alpha=16,
        lora_dropout=0.0,
        save_every=10,
        seed=0,
    )
    return PPOConfig(**{**base, **kw})


def assert_same_runs(field: str, values=(True, False), steps: int = 3):
    """A speed option must not change the algorithm: a run on the word task is the same (to 1e-4) for each
    value of the PPOConfig `field`."""
    tok = tiny_tokenizer()
    runs = [
        run_ppo(small_cfg(steps=steps, **{field: v}), tiny_lm(tok), tok, PROMPTS, target_fraction)["history"]
        for v in values
    ]
    for a, b in zip(*runs):
        for key in ("reward", "kl", "policy_loss", "value_loss", "response_length", "entropy"):
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6), key


def test_reference_is_the_adapter_disabled_policy():
    tok = tiny_tokenizer()
    tok.padding_side = "left"
    model = tiny_lm(tok)
    torch.manual_seed(1)
    policy, value_head = make_policy(small_cfg(), model)
    r = generate(policy, tok, PROMPTS[:4], 6, small_cfg())
    score(policy, value_head, r, 1.0, 2)
    torch.testing.assert_close(r.logprobs, r.ref_logprobs)  # fresh adapter: B = 0
    ref_before = r.ref_logprobs.clone()
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.5)
    score(policy, value_head, r, 1.0, 2)
    torch.testing.assert_close(r.ref_logprobs, ref_before)  # the reference did not move
    assert (r.logprobs - r.ref_logprobs).abs().max() > 1e-3  # the policy did


def test_ppo_raises_reward_and_kl_coef(tmp_path):
    tok = tiny_tokenizer()
    model = tiny_lm(tok)
    logged = []
    cfg = small_cfg()
    result = run_ppo(
        cfg, model, tok, PROMPTS, target_fraction, output_dir=str(tmp_path), log_fn=lambda s, m: logged.append(s)
    )
    hist = result["history"]
    assert len(hist) == cfg.steps and logged == list(range(1, cfg.steps + 1))
    assert {
        "reward",
        "kl",
        "kl_coef",
        "entropy",
        "policy_loss",
        "value_loss",
        "clip_fraction",
        "value_clip_fraction",
        "response_length",
        "tokens_per_second",
        "time_generate_s",
        "time_update_s",
    } <= set(hist[0])
    assert result["reward_last"] > result["reward_first"] + 0.2, (result["reward_first"], result["reward_last"])
    assert result["kl_last"] > cfg.target_kl
    assert result["kl_coef_last"] > cfg.init_kl_coef  # KL above a small target: the coefficient must rise
    assert all(1 <= h["response_length"] <= 8 for h in hist)  # EOS may end a response early

    # Checkpoints and the final adapter: the saved adapter merges into a fresh base to the tuned model.
    assert (tmp_path / "checkpoints" / "step-30" / "optimizer.pt").exists()
    assert (tmp_path / "value_head.safetensors").exists()
    merged = PeftModel.from_pretrained(tiny_lm(tok), str(tmp_path / "adapter")).merge_and_unload()
    ids = tok(PROMPTS[:2], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(merged(ids).logits, model(ids).logits, atol=1e-4, rtol=1e-4)


def test_runs_are_deterministic():
    tok = tiny_tokenizer()
    runs = [run_ppo(small_cfg(steps=2), tiny_lm(tok), tok, PROMPTS, target_fraction)["history"] for _ in range(2)]
    for a, b in zip(*runs):
        clocks = {"tokens_per_second", *(f"time_{phase}_s" for phase in PHASES)}
        assert {k: v for k, v in a.items() if k not in clocks} == {k: v for k, v in b.items() if k not in clocks}


def test_kl_limit_stops_training():
    tok = tiny_tokenizer()
    with pytest.raises(PPODivergence, match="kl_limit"):
        run_ppo(small_cfg(steps=5, kl_limit=1e-6), tiny_lm(tok), tok, PROMPTS, target_fraction)


def test_default_kl_horizon_moves_the_coefficient_within_a_run():
    """KL far below target: the default horizon (a fifth of the run's samples) lowers the coefficient ~0.9x a step."""
    tok = tiny_tokenizer()
    result = run_ppo(small_cfg(steps=5, kl_horizon=0, target_kl=100.0), tiny_lm(tok), tok, PROMPTS, target_fraction)
    assert result["kl_coef_last"] < 0.65 * small_cfg().init_kl_coef
