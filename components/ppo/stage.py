"""PPO stage: tune the merged SFT model with PPO against the reward model, on the prompt dataset.

Assembles the parts `kfrlhf.ppo.trainer.run_ppo` needs (policy, left-padding tokenizer, reward
scorer, tracker) and writes the adapter, `metrics.json` and `history.json` (per-step metrics).

    rlhf run --set ppo.steps=50 --set ppo.batch_size=16     # as part of the pipeline
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from kfrlhf.common import distributed
from kfrlhf.common.checkpoint import atomic_write_text, release_checkpoints
from kfrlhf.common.config import from_dict
from kfrlhf.common.data_sources import read_split
from kfrlhf.common.models import RewardScorer, load_causal_lm, load_pretrained_causal_lm, load_tokenizer
from kfrlhf.common.tracking import step_tracker
from kfrlhf.common.trainer_args import use_bf16

from .config import PPOConfig
from .trainer import run_ppo


def load_policy(cfg: PPOConfig, path: str):
    """The merged SFT model the adapter goes on: in bf16, or on a 4-bit base, when asked."""
    dtype = torch.bfloat16 if use_bf16(cfg, "ppo") else torch.float32
    if cfg.load_in_4bit:
        from peft import prepare_model_for_kbit_training

        model = load_causal_lm(path, load_in_4bit=True, dtype=dtype)
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)  # make_policy enables it
    else:
        model = load_pretrained_causal_lm(path, dtype=dtype)
    return model.eval()


def run(
    ppo: dict, sft_model: str, reward_model: str, prompt_data: str, output_dir: str, report_to: str = "none"
) -> dict:
    """The stage on directories; `reward_model` is the reward stage's output. Returns the summary metrics."""
    cfg = from_dict(PPOConfig, ppo, "ppo")
    model = load_policy(cfg, sft_model)
    tokenizer = load_tokenizer(sft_model, padding_side="left")
    prompts = [r["prompt"] for r in read_split(prompt_data, "train")]
    scorer = RewardScorer(str(Path(reward_model) / "model"), batch_size=cfg.reward_batch_size)
    main = distributed.is_main()  # under data parallelism rank 0 reports and writes
    with step_tracker(report_to if main else "none", output_dir, "ppo", ppo) as tracker:
        log_fn = (lambda step, values: tracker.log(values, step=step)) if tracker else None
        result = run_ppo(cfg, model, tokenizer, prompts, scorer, output_dir=output_dir, log_fn=log_fn)
    metrics = {k: v for k, v in result.items() if k != "history"}
    if not main:
        return metrics
    atomic_write_text(Path(output_dir) / "metrics.json", json.dumps(metrics, indent=2))
    atomic_write_text(Path(output_dir) / "history.json", json.dumps(result["history"], indent=1))
    release_checkpoints(Path(output_dir))
    return metrics
