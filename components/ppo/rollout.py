"""Rollouts for PPO: sample responses with the KV cache, then score them token by token.

One rollout = left-padded prompts -> `generate` (sampling, length drawn by the trainer)
-> responses cut after their first EOS -> one no-grad forward pass of the policy
(log-probs, values, entropy) and one with the LoRA adapter disabled (the reference
policy's log-probs: same weights, no second copy in memory).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .losses import entropy_from_logits, logprobs_from_logits


@dataclass
class Rollout:
    """A batch of sampled responses; per-token tensors are (batch, response_len)."""

    input_ids: torch.Tensor  # prompt + response
    attention_mask: torch.Tensor
    prompt_len: int
    response_ids: torch.Tensor
    mask: torch.Tensor  # 1 up to and including the first EOS
    logprobs: torch.Tensor | None = None
    ref_logprobs: torch.Tensor | None = None
    values: torch.Tensor | None = None
    entropy: torch.Tensor | None = None


class RunningMoments:
    """Running mean/std of all values seen so far (Chan et al.'s parallel update)."""

    def __init__(self):
        self.mean, self.var, self.count = 0.0, 1.0, 0

    def update(self, x: torch.Tensor) -> None:
        x = x.double()
        n, mean, var = x.numel(), x.mean().item(), x.var(unbiased=False).item()
        total = self.count + n
        delta = mean - self.mean
        m2 = self.var * self.count + var * n + delta**2 * self.count * n / total
        self.mean, self.var, self.count = self.mean + delta * n / total, m2 / total, total

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / max(self.var**0.5, 1e-6)

    def state_dict(self) -> dict:
        return {"mean": self.mean, "var": self.var, "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.mean, self.var, self.count = state["mean"], state["var"], state["count"]


def response_mask(response_ids: torch.Tensor, eos_token_id: int | None) -> torch.Tensor:
    """1 for tokens up to and including the first EOS (works when pad == eos)."""
    if eos_token_id is None:
        return torch.ones_like(response_ids, dtype=torch.float)
    is_eos = (response_ids == eos_token_id).long()
    after_eos = (is_eos.cumsum(1) - is_eos) > 0
    return (~after_eos).float()


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that skip the left padding (models that do not derive them from the mask need them)."""
    return (attention_mask.long().cumsum(1) - 1).clamp(min=0)


@torch.no_grad()
def generate(model, tokenizer, prompts: list[str], max_new_tokens: int, cfg) -> Rollout:
    """Sample one response per prompt (left padding, KV cache)."""
    device = next(model.parameters()).device
    enc = tokenizer(prompts, return_tensors="pt", padding=True, truncation=True, max_length=cfg.max_prompt_length)
    enc = {k: v.to(device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
    out = model.generate(
        **enc,
        do_sample=True,
        max_new_tokens=max_new_tokens,
        temperature=cfg.temperature,
        top_k=cfg.top_k,
        top_p=cfg.top_p,
        use_cache=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    prompt_len = enc["input_ids"].shape[1]
    response_ids = out[:, prompt_len:]
    mask = response_mask(response_ids, tokenizer.eos_token_id)
    attention_mask = torch.cat([enc["attention_mask"], mask.long()], dim=1)
    return Rollout(out, attention_mask, prompt_len, response_ids, mask)


def forward(model, value_head, input_ids, attention_mask, prompt_len: int, temperature: float):
    """Logits (temperature-scaled, as sampled) and values at the positions that predict the response tokens."""
    out = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids(attention_mask),
        output_hidden_states=value_head is not None,
        use_cache=False,
    )
    logits = out.logits[:, prompt_len - 1 : -1].float() / temperature
    values = None
    if value_head is not None:
        hidden = out.hidden_states[-1][:, prompt_len - 1 : -1]
        values = value_head(hidden.to(value_head.weight.dtype)).squeeze(-1)
    return logits, values


@torch.no_grad()
def score(model, value_head, rollout: Rollout, temperature: float, chunk: int) -> Rollout:
    """Fill in the policy's log-probs, values and entropy and the reference log-probs, `chunk` rows at a time."""
    parts: dict[str, list] = {"logprobs": [], "values": [], "entropy": [], "ref_logprobs": []}
    for i in range(0, len(rollout.input_ids), chunk):
        ids, am = rollout.input_ids[i : i + chunk], rollout.attention_mask[i : i + chunk]
        tokens = rollout.response_ids[i : i + chunk]
        logits, values = forward(model, value_head, ids, am, rollout.prompt_len, temperature)
        parts["logprobs"].append(logprobs_from_logits(logits, tokens))
        parts["values"].append(values)
        parts["entropy"].append(entropy_from_logits(logits))
        with model.disable_adapter():
            ref_logits, _ = forward(model, None, ids, am, rollout.prompt_len, temperature)
        parts["ref_logprobs"].append(logprobs_from_logits(ref_logits, tokens))
    for name, chunks in parts.items():
        setattr(rollout, name, torch.cat(chunks) * rollout.mask)
    return rollout
