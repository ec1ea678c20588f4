"""Sampling answers and scoring them token by token: what PPO's rollouts, the eval, RLAIF's pairs and ReST's Grow share.

`generate` samples one response per prompt (left padding, KV cache, a
`transformers.GenerationConfig` built from the stage's sampling fields) and ends each answer at its
first EOS or at the token where a stop string (the next HH turn, `\n\nHuman:`) begins: that token is
kept as sampled (its log-prob is the one the policy gave it, so PPO's ratio and KL stay exact) and is
the answer's last, the one the reward lands on; the answer's text ends before the stop string;
`forward` re-runs the model on prompt + response and returns the logits (and values, with a value head)
at the positions that predict the response tokens, with the same position ids generation used;
`logprobs_from_logits` and `entropy_from_logits` score them at the sampling temperature a few rows at
a time, so that no full-vocabulary fp32 copy of a whole batch's logits is made; `response_texts` collects the
answers' texts. `generate` is the `hf` rollout engine (`kfrlhf.common.rollout`, which also samples many prompts
under one seed).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


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


CHUNK_BYTES = 2**28  # the fp32 scratch of one chunk of rows (logits are (rows, positions, vocab))


def row_chunks(logits: torch.Tensor, chunk_bytes: int | None = None) -> list[slice]:
    """Slices of `logits`' first dimension whose fp32 copy fits in `chunk_bytes` (at least one row each)."""
    rows = max(1, (chunk_bytes or CHUNK_BYTES) // max(logits[:1].numel() * 4, 1))
    return [slice(i, i + rows) for i in range(0, len(logits), rows)]


class _TokenLogprobs(torch.autograd.Function):
    """log softmax(logits / T)[token], in fp32, a chunk of rows at a time. What it keeps for the backward pass is
    the logits themselves (in their own dtype) and one log-sum-exp per token; the backward pass writes the
    gradient (softmax - onehot, scaled) chunk by chunk into one tensor of the logits' dtype. The plain
    expression (`log_softmax(logits.float() / T)`) keeps an fp32 copy of the whole batch's logits and makes
    more of them in the backward pass."""

    @staticmethod
    def forward(ctx, logits, tokens, temperature: float, chunk_bytes: int | None):
        out = torch.empty(tokens.shape, dtype=torch.float32, device=logits.device)
        lse = torch.empty_like(out)
        for rows in row_chunks(logits, chunk_bytes):
            x = scaled(logits[rows], temperature)
            lse[rows] = torch.logsumexp(x, dim=-1)
            out[rows] = x.gather(-1, tokens[rows].unsqueeze(-1)).squeeze(-1) - lse[rows]
        ctx.save_for_backward(logits, tokens, lse)
        ctx.temperature, ctx.chunk_bytes = temperature, chunk_bytes
        return out

    @staticmethod
    def backward(ctx, grad):
        logits, tokens, lse = ctx.saved_tensors
        out = torch.empty_like(logits)
        for rows in row_chunks(logits, ctx.chunk_bytes):
            g = grad[rows].unsqueeze(-1) / ctx.temperature
            d = scaled(logits[rows], ctx.temperature).sub_(lse[rows].unsqueeze(-1)).exp_().mul_(-g)  # -softmax g/T
            out[rows] = d.scatter_add_(-1, tokens[rows].unsqueeze(-1), g)
        return out, None, None, None


def scaled(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """A fresh fp32 copy of `logits / temperature` (the one scratch buffer of a chunk: the rest is in place)."""
    return logits.to(torch.float32, copy=True).div_(temperature)


def logprobs_from_logits(
    logits: torch.Tensor, tokens: torch.Tensor, temperature: float = 1.0, chunk_bytes: int | None = None
) -> torch.Tensor:
    """Log-probability (fp32) of each token in `tokens` under `logits / temperature` (..., vocab)."""
    return _TokenLogprobs.apply(logits, tokens, temperature, chunk_bytes)


@torch.no_grad()
def entropy_from_logits(logits: torch.Tensor, temperature: float = 1.0, chunk_bytes: int | None = None):
    """Entropy (fp32) of the categorical distribution given by `logits / temperature` (over the last dim)."""
    out = torch.empty(logits.shape[:-1], dtype=torch.float32, device=logits.device)
    for rows in row_chunks(logits, chunk_bytes):
        x = scaled(logits[rows], temperature)
        out[rows] = torch.logsumexp(x, dim=-1) - torch.softmax(x, dim=-1).mul_(x).sum(-1)  # -sum p log p
    return out


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


def forward(model, value_head, input_ids, attention_mask, prompt_len: int):
    """Logits (the model's, in its dtype: `logprobs_from_logits` applies the temperature) and values at the
    positions that predict the response tokens.

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
    logits = out.logits[:, :-1]
    values = None
    if value_head is not None:
        values = value_head(found[-1][:, :-1].to(value_head.weight.dtype)).squeeze(-1)
    return logits, values
