"""A tiny task with a known reward, for the PPO tests and the PPO benchmark (benchmarks/ppo_vs_trl.py).

A random OPT over a 24-word vocabulary (word-level tokenizer) and a tiny sequence-classification
reward model trained for a few seconds to score the fraction of the word "good" in a response.
"""

from __future__ import annotations

import random

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import OPTConfig, OPTForCausalLM, OPTForSequenceClassification, PreTrainedTokenizerFast

WORDS = "good bad the a cat dog sat on mat ran far away big small red blue green tree house car".split()
TARGET = "good"
PROMPTS = [f"the {a} {b}" for a in ("cat", "dog", "car", "tree") for b in ("sat", "ran", "on", "far")]


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer over WORDS with <pad>, <eos> and <unk>."""
    vocab = {w: i for i, w in enumerate(["<pad>", "<eos>", "<unk>", *WORDS])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")


def tiny_config(tokenizer, **kw) -> OPTConfig:
    # init_std 0.2 (not 0.02): with tiny embeddings the logits cannot get far from uniform.
    defaults = dict(dropout=0.0, attention_dropout=0.0)
    return OPTConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        word_embed_proj_dim=32,
        ffn_dim=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=64,
        init_std=0.2,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **{**defaults, **kw},
    )


def tiny_lm(tokenizer, seed: int = 0) -> OPTForCausalLM:
    torch.manual_seed(seed)
    return OPTForCausalLM(tiny_config(tokenizer)).eval()


def target_fraction(texts: list[str]) -> torch.Tensor:
    return torch.tensor([t.split().count(TARGET) / max(len(t.split()), 1) for t in texts])


def train_reward_model(tokenizer, seed: int = 0, steps: int = 300) -> OPTForSequenceClassification:
    """A tiny sequence classifier regressed onto the fraction of TARGET words in a response."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    rm = OPTForSequenceClassification(tiny_config(tokenizer, num_labels=1))
    opt = torch.optim.AdamW(rm.parameters(), lr=3e-3)
    others = [w for w in WORDS if w != TARGET]
    for _ in range(steps):
        responses = []
        for _ in range(32):
            p = rng.random()
            responses.append(
                " ".join(TARGET if rng.random() < p else rng.choice(others) for _ in range(rng.randint(1, 8)))
            )
        texts = [f"{rng.choice(PROMPTS)} {r}" for r in responses]
        enc = tokenizer(texts, return_tensors="pt", padding=True)
        loss = torch.nn.functional.mse_loss(rm(**enc).logits.squeeze(-1), target_fraction(responses))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return rm.eval()


def rm_reward_fn(rm, tokenizer):
    """Wrap a sequence-classification reward model into run_ppo's reward_fn (scores prompt + response).

    The classifier pools at the last non-pad token, so either padding side works.
    """

    @torch.no_grad()
    def reward_fn(prompts: list[str], responses: list[str]) -> torch.Tensor:
        enc = tokenizer([f"{p} {r}" for p, r in zip(prompts, responses)], return_tensors="pt", padding=True)
        return rm(**enc).logits.squeeze(-1)

    return reward_fn
