"""PPO's memory options: activation checkpointing recomputes the layers in the update and changes no
number; bf16 falls back to fp32 where no GPU supports it."""

import pytest
import torch

from kfrlhf.ppo.config import PPOConfig
from kfrlhf.ppo.stage import load_policy
from kfrlhf.ppo.trainer import run_ppo
from tests.test_ppo_trainer import small_cfg, target_fraction
from tests.word_task import PROMPTS, tiny_lm, tiny_tokenizer

KEYS = ("reward", "kl", "policy_loss", "value_loss", "approx_kl")


def _run(checkpointing: bool) -> tuple[list[dict], int]:
    tok = tiny_tokenizer()
    tok.padding_side = "left"
    model = tiny_lm(tok)
    calls = []  # a module inside a layer: the checkpointed layer's forward reruns it in the backward pass
    model.model.decoder.layers[0].fc1.register_forward_hook(lambda *args: calls.append(1))
    cfg = small_cfg(steps=2, batch_size=4, mini_batch_size=2, gradient_checkpointing=checkpointing)
    return run_ppo(cfg, model, tok, PROMPTS, target_fraction)["history"], len(calls)


def test_gradient_checkpointing_recomputes_and_changes_nothing():
    plain, plain_calls = _run(False)
    checkpointed, checkpointed_calls = _run(True)
    assert checkpointed_calls == plain_calls + 2 * 2 * 2  # steps x mini-batches x epochs
    for a, b in zip(plain, checkpointed):
        for key in KEYS:
            assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-7), key


def test_bf16_falls_back_to_fp32_without_a_bf16_gpu(tiny_lm_dir, caplog):
    if torch.cuda.is_available():
        pytest.skip("a GPU machine loads bf16")
    model = load_policy(PPOConfig(bf16=True), str(tiny_lm_dir))
    assert next(model.parameters()).dtype == torch.float32
    assert "ppo.bf16" in caplog.text
