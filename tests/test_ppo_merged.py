"""Sampling from a merged copy of the policy (`kfrlhf.ppo.merged`) changes nothing but speed: the same greedy
tokens and logits (to 1e-5) as the LoRA policy, after updates too, with the base (the reference policy) left
bit for bit as it was, and the same PPO run."""

import torch

from kfrlhf.common import models
from kfrlhf.ppo.merged import MergedCopy, can_merge
from kfrlhf.ppo.trainer import make_policy
from tests.test_ppo_trainer import assert_same_runs, small_cfg
from tests.word_task import PROMPTS, tiny_lm, tiny_tokenizer


def greedy(model, tok, prompts):
    enc = tok(prompts, return_tensors="pt", padding=True)
    out = model.generate(**enc, max_new_tokens=6, do_sample=False, pad_token_id=tok.pad_token_id)
    logits = model(**enc).logits
    return out, logits


def test_the_copy_answers_as_the_policy_does_and_leaves_the_base_alone():
    tok = tiny_tokenizer()
    tok.padding_side = "left"
    policy, _ = make_policy(small_cfg(), tiny_lm(tok))
    policy.eval()
    sampler = MergedCopy(policy)
    base = {n: p.clone() for n, p in policy.named_parameters() if "lora_" not in n}
    for step in range(2):
        with torch.no_grad():  # an update: the adapter moves
            for name, p in policy.named_parameters():
                if "lora_" in name:
                    p.add_(torch.randn_like(p) * 0.3)
        merged = sampler.sync()
        (ids, logits), (ref_ids, ref_logits) = greedy(merged, tok, PROMPTS[:6]), greedy(policy, tok, PROMPTS[:6])
        assert torch.equal(ids, ref_ids), step
        torch.testing.assert_close(logits, ref_logits, atol=1e-5, rtol=1e-5)
    assert all(torch.equal(p, base[n]) for n, p in policy.named_parameters() if "lora_" not in n)
    with policy.disable_adapter():  # the reference policy is still the untouched base
        assert not torch.allclose(greedy(policy, tok, PROMPTS[:6])[1], logits, atol=1e-3)
    assert not any(p.requires_grad for p in merged.parameters())


def test_a_run_is_the_same_with_or_without_the_merged_copy():
    assert_same_runs("merged_generation")


def test_a_4bit_base_is_not_merged():
    assert can_merge(models.load_causal_lm(models.TINY_CAUSAL))
    assert not can_merge(models.load_causal_lm(models.TINY_CAUSAL, load_in_4bit=True))
