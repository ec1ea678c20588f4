"""Rollout engines: what samples the answers that PPO, ReST's Grow, RLAIF's answer pairs and the eval use.

An engine takes prompts and the stage's sampling fields (`SamplingFields`) and returns the left-padded `Rollout`
of `kfrlhf.common.sampling` (tokens, masks, where each answer ended, texts); the callers score it themselves.
`rollout_engine` in each of those stages' sections picks it (GRPO's section too: there it turns on TRL's own vLLM
sampling, `use_vllm`, since TRL's GRPOTrainer samples itself):

- `hf`: transformers' `generate` in the trainer's process, on the model `weights()` gives (PPO: the merged copy
  of the policy, `kfrlhf.ppo.merged`; optionally a static KV cache). No extra memory, no start-up.
- `vllm`: vLLM in a process of its own, with its own Python (vLLM pins another transformers than the project):
  `kfrlhf.common.rollout.vllm_engine`. It holds a copy of the weights and a KV cache of its own.

An engine's `sync()` takes the weights `weights()` returns now (PPO calls it after each optimisation step, before
sampling); `generate` samples from them with the torch seed's next draw, so a run is the same under one seed.
"""

from __future__ import annotations

from collections.abc import Callable

from tqdm.auto import tqdm

ENGINES = ("hf", "vllm")


def make_engine(cfg, tokenizer, weights: Callable):
    """The engine `cfg.rollout_engine` names, sampling from the model `weights()` returns (a plain model for
    `vllm`: no LoRA layers, no 4-bit base); `tokenizer` pads and cuts on the left."""
    if cfg.rollout_engine == "vllm":
        from .vllm_engine import VLLMEngine

        return VLLMEngine(cfg, tokenizer, weights)
    from .hf import HFEngine

    return HFEngine(tokenizer, weights)


def sample_batches(model, tokenizer, prompts: list[str], max_new_tokens: int, cfg, batch_size: int, seed: int):
    """One sampled answer per prompt from `model`, `batch_size` prompts per `generate` call, from `seed` (the same
    for every model sampled with it), with the engine `cfg.rollout_engine` names."""
    import torch

    torch.manual_seed(seed)
    with make_engine(cfg, tokenizer, lambda: model) as engine:
        engine.sync()
        return [
            engine.generate(prompts[i : i + batch_size], max_new_tokens, cfg)
            for i in tqdm(range(0, len(prompts), batch_size), desc="generate", leave=False)
        ]
