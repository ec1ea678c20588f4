"""GRPO: Group Relative Policy Optimisation with TRL's GRPOTrainer, scored by our reward model.

Algorithm: the policy is the merged SFT model with a fresh LoRA adapter; the reference is the same
weights with the adapter disabled. Each step samples a group of `num_generations` answers per prompt,
scores each with the reward model (`RewardScorer`, the inputs PPO and the eval use; an answer is cut
where a stop string begins), and gives each answer the advantage (r - group mean) / group std: no
value model, the group is the baseline. The loss is the clipped policy-gradient objective on those
advantages plus beta x KL(policy || reference). Writes the adapter and tokenizer to
`output_dir/adapter` and the metrics (reward at the first and last logged step, KL, loss) to
`output_dir/metrics.json`. Checkpoints, resume and SIGTERM as in SFT (`kfrlhf.common.checkpoint`).

    rlhf run --pipeline grpo --set grpo.max_steps=100
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from kfrlhf.common import distributed
from kfrlhf.common.checkpoint import atomic_write_text, release_checkpoints, save_adapter, train_resumable
from kfrlhf.common.config import from_dict
from kfrlhf.common.data_sources import read_split
from kfrlhf.common.models import RewardScorer, load_causal_lm, load_tokenizer, lora_config
from kfrlhf.common.trainer_args import train_loss_ends, trainer_args

from .config import GRPOConfig


def reward_function(scorer, stop_strings: list[str]):
    """GRPOTrainer's reward function (TRL names its metrics after the function): the reward model's
    score of each (prompt, answer), the answer cut where the first stop string begins."""

    def reward_model(prompts: list[str], completions: list[str], **kwargs) -> list[float]:
        answers = []
        for text in completions:
            starts = [i for i in (text.find(s) for s in stop_strings) if i >= 0]
            answers.append(text[: min(starts)] if starts else text)
        return scorer(prompts, answers).tolist()

    return reward_model


def cut_prompts(tokenizer, prompts: list[str], max_tokens: int) -> list[str]:
    """Prompts longer than `max_tokens` cut on the left (TRL's GRPO has no prompt length of its own)."""
    ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    return [p if len(i) <= max_tokens else tokenizer.decode(i[-max_tokens:]) for p, i in zip(prompts, ids)]


def grpo_trainer(cfg: GRPOConfig, sft_model: str, prompts: list[str], reward_fn, output_dir: Path, report_to: str):
    """TRL's GRPOTrainer on the merged SFT model with a LoRA adapter, set up from our config."""
    from datasets import Dataset
    from trl import GRPOConfig as TrlGRPOConfig
    from trl import GRPOTrainer

    tokenizer = load_tokenizer(sft_model, padding_side="left")
    args = TrlGRPOConfig(
        num_generations=cfg.num_generations,
        max_completion_length=cfg.max_new_tokens,
        temperature=cfg.temperature,  # the full distribution, as the eval samples it
        top_p=1.0,
        top_k=0,
        beta=cfg.beta,
        epsilon=cfg.epsilon,
        scale_rewards=cfg.scale_rewards,
        # TRL samples itself: `rollout_engine` vllm is TRL's own vLLM in the trainer's process (vLLM importable there).
        use_vllm=cfg.rollout_engine == "vllm",
        vllm_mode="colocate",
        **{**trainer_args(cfg, output_dir, report_to, "grpo"), "eval_strategy": "no"},
    )
    return GRPOTrainer(
        model=load_causal_lm(sft_model),
        reward_funcs=reward_fn,
        args=args,
        train_dataset=Dataset.from_list(
            [{"prompt": p} for p in cut_prompts(tokenizer, prompts, cfg.max_prompt_length)]
        ),
        processing_class=tokenizer,
        peft_config=lora_config(cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout),
    )


def train_grpo(
    cfg: GRPOConfig,
    sft_model: str,
    reward_dir: str,
    prompts: list[str],
    output_dir: str | Path,
    report_to: str = "none",
) -> dict:
    """`sft_model`: the merged SFT model's directory; `reward_dir`: a saved reward model."""
    output_dir = Path(output_dir)
    reward_fn = reward_function(RewardScorer(reward_dir), cfg.stop_strings)
    trainer = grpo_trainer(cfg, sft_model, prompts, reward_fn, output_dir, report_to)
    train_resumable(trainer, "GRPO", dataclasses.asdict(cfg))
    logged = [h for h in trainer.state.log_history if "reward" in h]
    metrics = {
        **({"grpo_reward_first": logged[0]["reward"], "grpo_reward_last": logged[-1]["reward"]} if logged else {}),
        **({"grpo_kl_last": logged[-1]["kl"]} if logged and "kl" in logged[-1] else {}),
        **train_loss_ends(trainer, "grpo"),
    }
    if not distributed.is_main():  # rank 0 writes the outputs
        return metrics
    save_adapter(trainer.model, trainer.processing_class, output_dir / "adapter")
    atomic_write_text(output_dir / "metrics.json", json.dumps(metrics, indent=2))
    return metrics


def run(grpo: dict, sft_model: str, reward_model: str, prompt_data: str, output_dir: str, report_to: str = "none"):
    """The stage on directories (what the KFP component calls); `reward_model` is the reward stage's output."""
    cfg = from_dict(GRPOConfig, grpo, "grpo")
    prompts = [r["prompt"] for r in read_split(prompt_data, "train")]
    metrics = train_grpo(cfg, sft_model, str(Path(reward_model) / "model"), prompts, output_dir, report_to)
    release_checkpoints(Path(output_dir))
    return metrics
