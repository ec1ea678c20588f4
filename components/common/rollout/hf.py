"""The `hf` rollout engine: transformers' `generate` in the trainer's process (`kfrlhf.common.sampling.generate`)."""

from __future__ import annotations

from kfrlhf.common.sampling import generate


class HFEngine:
    """Samples from the model `weights()` returned at the last `sync()` (PPO's merged copy shares its memory)."""

    name = "hf"

    def __init__(self, tokenizer, weights):
        self.tokenizer, self.weights, self.model = tokenizer, weights, None

    def sync(self) -> None:
        self.model = self.weights()

    def generate(self, prompts: list[str], max_new_tokens: int, cfg):
        return generate(self.model, self.tokenizer, prompts, max_new_tokens, cfg)

    def close(self) -> None:
        self.model = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
