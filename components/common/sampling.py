"""Sampling answers and scoring them token by token: what PPO's rollouts, the eval, RLAIF's pairs and ReST's Grow share.

`generate` samples one response per prompt (left padding, KV cache, a
`transformers.GenerationConfig` built from the stage's sampling fields) and ends each answer at its
first EOS or at the token where a stop string (the next HH turn, `\n\nHuman:`) begins: that token is
kept as sampled (its log-prob is the one the policy gave it, so PPO's ratio and KL stay exact) and is
the answer's last, the one the reward lands on; the answer's text ends before the stop string;
`forward` re-runs the model on prompt + response and returns the
temperature-scaled logits (and values, with a value head) at the positions that predict the
response tokens, with the same position ids generation used. `sample_batches` runs `generate` over
many prompts under one seed and `response_texts` collects the answers' texts.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm


@dataclass
class Rollout:
    """A batch of sampled responses; per-token tensors are (batch, response_len)."""

    input_ids: torch.Tensor  # prompt + response
    attention_mask: torch.Tensor
    prompt_len: int
    response_ids: torch.Tensor  # as sampled
    mask: torch.Tensor  # 1 up to and including the answer's last token (first EOS, or where a stop string begins)
    texts: list[str]  # the answers, ending before any stop string
    ended: torch.Tensor  # per row: the answer ended (EOS or stop string) within the token budget
    logprobs: torch.Tensor | None = None
    ref_logprobs: torch.Tensor | None = None
    values: torch.Tensor | None = None
    entropy: torch.Tensor | None = None


def logprobs_from_logits(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Log-probability of each token in `tokens` under `logits` (..., vocab)."""
    logp = F.log_softmax(logits.float(), dim=-1)
    return logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that skip the left padding (models that do not derive them from the mask need them)."""
    return (attention_mask.long().cumsum(1) - 1).clamp(min=0)


def generation_config(tokenizer, max_new_tokens: int, cfg):
    """Sampling from the full distribution at the stage config's `temperature`: what `forward` scores.

    A static cache is sized for the longest answer the config allows, whatever this call's `max_new_tokens`: PPO
    draws each step's length, and a cache of another size would make transformers compile the decoding again."""
    from transformers import GenerationConfig

    static = getattr(cfg, "static_cache", False)
    return GenerationConfig(
        do_sample=True,
        max_new_tokens=max_new_tokens,
        temperature=cfg.temperature,
        top_k=0,  # transformers' default is 50
        top_p=1.0,
        use_cache=True,
        cache_implementation="static" if static else None,
        max_cache_len=cfg.max_prompt_length + cfg.max_new_tokens if static else None,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )


class StopOnText:
    """A stopping criterion: a row is done once the text of its last tokens holds a stop string.

    (transformers' own `stop_strings` precomputes token tables that fail on word-level tokenizers.)"""

    def __init__(self, tokenizer, stop_strings: list[str], prompt_len: int):
        self.tokenizer, self.stop_strings, self.prompt_len = tokenizer, stop_strings, prompt_len
        self.window = max(len(s) for s in stop_strings) + 2  # a token holds at least one character

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        tails = self.tokenizer.batch_decode(input_ids[:, self.prompt_len :][:, -self.window :])
        return torch.tensor([any(s in t for s in self.stop_strings) for t in tails], device=input_ids.device)


def answer_ends(response_ids: torch.Tensor, tokenizer, stop_strings: list[str]):
    """Where each answer ends: its first EOS, or the first token whose text reaches into a stop string.

    Returns the mask (1 up to and including that token; all 1 when the answer runs to the budget), whether
    each answer ended, and the answers' texts, cut before the stop string."""
    eos = tokenizer.eos_token_id
    ends, texts = [], []
    for ids in response_ids.tolist():
        end = ids.index(eos) if eos in ids else -1
        body = ids[:end] if end >= 0 else ids
        text = tokenizer.decode(body, skip_special_tokens=True)
        starts = [i for i in (text.find(s) for s in stop_strings) if i >= 0]
        if starts:
            cut = min(starts)
            prefix = (len(tokenizer.decode(body[: j + 1], skip_special_tokens=True)) for j in range(len(body)))
            end, text = next((j for j, n in enumerate(prefix) if n > cut), len(body) - 1), text[:cut]
        ends.append(end)
        texts.append(text)
    ends = torch.tensor(ends, device=response_ids.device)[:, None]
    positions = torch.arange(response_ids.shape[1], device=response_ids.device)[None]
    return ((positions <= ends) | (ends < 0)).float(), ends[:, 0] >= 0, texts


@torch.no_grad()
def generate(model, tokenizer, prompts: list[str], max_new_tokens: int, cfg) -> Rollout:
    """Sample one response per prompt (left padding, KV cache); prompts cut to `cfg.max_prompt_length` on the left,
    and padded to it with a static cache (`cfg.static_cache`: one shape, compiled once)."""
    device = next(model.parameters()).device
    padding = "max_length" if getattr(cfg, "static_cache", False) else True
    enc = tokenizer(prompts, return_tensors="pt", padding=padding, truncation=True, max_length=cfg.max_prompt_length)
    enc = {k: v.to(device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
    prompt_len = enc["input_ids"].shape[1]
    stop = [StopOnText(tokenizer, cfg.stop_strings, prompt_len)] if cfg.stop_strings else None
    out = model.generate(
        **enc, generation_config=generation_config(tokenizer, max_new_tokens, cfg), stopping_criteria=stop
    )
    if padding == "max_length":  # the padding no prompt needed goes: the training passes need not carry it
        start = int(enc["attention_mask"].any(0).int().argmax())
        out, enc["attention_mask"], prompt_len = out[:, start:], enc["attention_mask"][:, start:], prompt_len - start
    response_ids = out[:, prompt_len:]
    mask, ended, texts = answer_ends(response_ids, tokenizer, cfg.stop_strings)
    attention_mask = torch.cat([enc["attention_mask"], mask.long()], dim=1)
    return Rollout(out, attention_mask, prompt_len, response_ids, mask, texts, ended)


def response_texts(rollouts: list[Rollout]) -> list[str]:
    """The answers' texts of a list of rollouts, in order (what the reward model scores)."""
    return [text for r in rollouts for text in r.texts]


def forward(model, value_head, input_ids, attention_mask, prompt_len: int, temperature: float):
    """Logits (temperature-scaled, as sampled) and values at the positions that predict the response tokens.

    Only those positions go through the output layer (`logits_to_keep`: the prompt's vocabulary-wide logits are
    never made), and the value head reads the output layer's input there (a hook), so no other layer's hidden
    states are returned."""
    found = []
    head = model.get_output_embeddings()
    hook = head.register_forward_hook(lambda m, args, out: found.append(args[0])) if value_head is not None else None
    try:
        out = model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids(attention_mask),
            use_cache=False,
            logits_to_keep=input_ids.shape[1] - prompt_len + 1,  # from the prompt's last token; the last dropped
        )
    finally:
        if hook is not None:
            hook.remove()
    logits = out.logits[:, :-1].float() / temperature
    values = None
    if value_head is not None:
        values = value_head(found[-1][:, :-1].to(value_head.weight.dtype)).squeeze(-1)
    return logits, values


@torch.no_grad()
def sample_batches(model, tokenizer, prompts: list[str], max_new_tokens: int, cfg, batch_size: int, seed: int):
    """One sampled answer per prompt, `batch_size` prompts per `generate` call, from `seed` (the same for
    every model sampled with it)."""
    torch.manual_seed(seed)
    return [
        generate(model, tokenizer, prompts[i : i + batch_size], max_new_tokens, cfg)
        for i in tqdm(range(0, len(prompts), batch_size), desc="generate", leave=False)
    ]
