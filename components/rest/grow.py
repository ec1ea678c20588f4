"""ReST Grow: sample `samples_per_prompt` answers per prompt from the current policy and score them.

The policy is the merged SFT model, with the previous Improve step's LoRA adapter on it from the
second iteration on. Answers are sampled with the shared rollout code (`kfrlhf.common.rollout`, the
full distribution at `temperature`, cut at EOS or a stop string) and scored by the reward model on
the same inputs PPO and the eval use (`RewardScorer`). Writes the dataset `samples.jsonl` (one row
per answer: prompt, response, reward, iteration) and `summary.json` (reward mean and spread) to
`output_dir`; it is the Grow task's KFP Dataset artifact, readable in the UI.

    rlhf run --pipeline rest --set rest.samples_per_prompt=8
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from kfrlhf.common.checkpoint import atomic_dir
from kfrlhf.common.models import load_pretrained_causal_lm
from kfrlhf.common.rollout import sample_batches
from kfrlhf.common.sampling import response_texts

from .config import RESTConfig

SAMPLES = "samples.jsonl"


def load_policy(sft_model: str, adapter: str | None):
    """The merged SFT model, with `adapter` (an Improve step's output) on it when given."""
    model = load_pretrained_causal_lm(sft_model)
    if adapter is None:
        return model
    from peft import PeftModel

    return PeftModel.from_pretrained(model, adapter).eval()


def grow(
    cfg: RESTConfig, iteration: int, policy, tokenizer, scorer, prompts: list[str], output_dir: str | Path
) -> dict:
    """Sample and score; `tokenizer` pads on the left. Returns the summary."""
    prompts = prompts[: cfg.num_prompts or None]
    repeated = [p for p in prompts for _ in range(cfg.samples_per_prompt)]
    rollouts = sample_batches(
        policy, tokenizer, repeated, cfg.max_new_tokens, cfg, cfg.generation_batch_size, cfg.seed + iteration
    )
    responses = response_texts(rollouts)
    rewards = scorer(repeated, responses).tolist()
    rows = [
        {"prompt": p, "response": r, "reward": s, "iteration": iteration}
        for p, r, s in zip(repeated, responses, rewards)
    ]
    summary = {
        "rest_grow_samples": len(rows),
        "rest_grow_reward_mean": statistics.fmean(rewards),
        "rest_grow_reward_std": statistics.pstdev(rewards),
    }
    with atomic_dir(Path(output_dir)) as tmp:
        (tmp / SAMPLES).write_text("".join(json.dumps(row) + "\n" for row in rows))
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
