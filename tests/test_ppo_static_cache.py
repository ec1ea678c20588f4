"""Decoding with a static KV cache (`ppo.static_cache`: prompts padded to `max_prompt_length`, one fixed-size
cache, which transformers compiles on a GPU) changes nothing but speed: the same sampled tokens, texts and
masks under one seed, the same log-probs to 1e-5, and the same PPO run, on OPT and on Llama (SmolLM2's
architecture)."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from kfrlhf.common.sampling import forward, generate
from tests.test_ppo_trainer import assert_same_runs, small_cfg
from tests.word_task import PROMPTS, tiny_lm, tiny_tokenizer


def tiny_llama(tok):
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
    )  # fmt: skip
    return LlamaForCausalLM(cfg).eval()


# On CUDA (the GPU check runs this file) transformers compiles the static cache's decoding step: the same answers.
DEVICES = ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("build", [tiny_lm, tiny_llama], ids=["opt", "llama"])
def test_a_static_cache_samples_the_same_answers(build, device):
    tok = tiny_tokenizer()
    tok.padding_side = "left"
    model = build(tok).to(device)
    caches, sample = [], model.generate

    def spy(*args, generation_config, **kw):  # which cache generate was asked for, and for how long a prompt
        caches.append((generation_config.cache_implementation, kw["input_ids"].shape[1]))
        return sample(*args, generation_config=generation_config, **kw)

    model.generate = spy
    rollouts = {}
    for static in (False, True):
        torch.manual_seed(3)
        rollouts[static] = generate(model, tok, PROMPTS[:8], 8, small_cfg(static_cache=static))
    dynamic, static = rollouts[False], rollouts[True]
    assert caches == [(None, dynamic.prompt_len), ("static", small_cfg().max_prompt_length)]  # one shape
    assert static.prompt_len == dynamic.prompt_len < small_cfg().max_prompt_length  # the extra padding cut again
    assert torch.equal(static.input_ids, dynamic.input_ids)
    assert torch.equal(static.response_ids, dynamic.response_ids) and static.texts == dynamic.texts
    assert torch.equal(static.mask, dynamic.mask)
    with torch.no_grad():
        logits = [forward(model, None, r.input_ids, r.attention_mask, r.prompt_len)[0] for r in (dynamic, static)]
    kept = dynamic.mask.bool()
    torch.testing.assert_close(logits[1][kept], logits[0][kept], atol=1e-5, rtol=1e-5)


def test_a_run_is_the_same_with_or_without_a_static_cache():
    assert_same_runs("static_cache")


def test_the_static_cache_has_one_size_whatever_the_answer_length():
    """PPO draws each step's answer length: the cache is sized for the longest the config allows, so that a
    compiled decoding step (on a GPU) is never compiled again for another cache size."""
    tok = tiny_tokenizer()
    tok.padding_side = "left"
    model, sizes = tiny_llama(tok), []
    run = model.forward

    def spy(*args, past_key_values=None, **kw):
        sizes.append(past_key_values.get_max_length())
        return run(*args, past_key_values=past_key_values, **kw)

    model.forward = spy
    cfg = small_cfg(static_cache=True)
    for n_new in (2, cfg.max_new_tokens):
        generate(model, tok, PROMPTS[:4], n_new, cfg)
    assert set(sizes) == {cfg.max_prompt_length + cfg.max_new_tokens}
