"""Rollouts for PPO: sampled responses (`kfrlhf.common.sampling.generate`) scored token by token.

One rollout = left-padded prompts -> `generate` (sampling, length drawn by the trainer)
-> responses cut after their first EOS -> one no-grad forward pass of the policy
(log-probs, values, entropy) and one with the LoRA adapter disabled (the reference
policy's log-probs: same weights, no second copy in memory).
"""

from __future__ import annotations

import torch

from kfrlhf.common.sampling import Rollout, entropy_from_logits, forward, logprobs_from_logits


@torch.no_grad()
def score(model, value_head, rollout: Rollout, temperature: float, chunk: int) -> Rollout:
    """Fill in the policy's log-probs, values and entropy and the reference log-probs, `chunk` rows at a time."""
    parts: dict[str, list] = {"logprobs": [], "values": [], "entropy": [], "ref_logprobs": []}
    for i in range(0, len(rollout.input_ids), chunk):
        ids, am = rollout.input_ids[i : i + chunk], rollout.attention_mask[i : i + chunk]
        tokens = rollout.response_ids[i : i + chunk]
        logits, values = forward(model, value_head, ids, am, rollout.prompt_len)
        parts["logprobs"].append(logprobs_from_logits(logits, tokens, temperature))
        parts["values"].append(values)
        parts["entropy"].append(entropy_from_logits(logits, temperature))
        del logits
        with model.disable_adapter():
            ref_logits, _ = forward(model, None, ids, am, rollout.prompt_len)
        parts["ref_logprobs"].append(logprobs_from_logits(ref_logits, tokens, temperature))
    for name, chunks in parts.items():
        setattr(rollout, name, torch.cat(chunks) * rollout.mask)
    return rollout
