"""DPO: Direct Preference Optimisation, the alternative to reward model + PPO (TRL DPOTrainer).

Algorithm: the policy is the merged SFT model with a fresh LoRA adapter; the reference is the
same weights with the adapter disabled (no second copy in memory). On each chosen/rejected
pair, with the implicit reward r(y) = beta * (log pi(y|x) - log pi_ref(y|x)) summed over the
answer's tokens, the loss is -log sigmoid(r(chosen) - r(rejected)): the policy moves towards
the preferred answer and away from the other, held near the reference by beta, with no reward
model and no sampling. Writes the adapter and tokenizer to `output_dir/adapter` and the
metrics (DPO eval loss, implicit-reward accuracy and margin, before and after) to
`output_dir/metrics.json`. Checkpoints, resume and SIGTERM as in SFT (see `kfrlhf.common.checkpoint`).

    rlhf run --pipeline dpo --set dpo.max_steps=100
"""

from __future__ import annotations

from pathlib import Path

from kfrlhf.common.checkpoint import release_checkpoints
from kfrlhf.common.config import from_dict
from kfrlhf.common.data_sources import read_split
from kfrlhf.common.models import load_causal_lm, load_tokenizer, lora_config
from kfrlhf.common.trainer_args import split_prompt, train_adapter, trainer_args

from .config import DPOConfig

# DPOTrainer's eval logs -> our metric names.
EVAL_KEYS = {
    "eval_loss": "dpo_eval_loss",
    "eval_rewards/accuracies": "dpo_reward_accuracy",
    "eval_rewards/margins": "dpo_reward_margin",
}


def train_dpo(
    cfg: DPOConfig,
    sft_model: str,
    train_rows: list[dict],
    eval_rows: list[dict],
    output_dir: str | Path,
    report_to: str = "none",
) -> dict:
    """`sft_model`: the merged SFT model's directory; rows: {prompt, chosen, rejected}, prompts in model format."""
    from datasets import Dataset
    from transformers import set_seed
    from trl import DPOConfig as TrlDPOConfig
    from trl import DPOTrainer

    output_dir = Path(output_dir)
    set_seed(cfg.seed)  # the adapter's initial weights too: every process, and every rerun, starts alike
    tokenizer = load_tokenizer(sft_model)

    def pairs(rows):
        out = []
        for r in rows:
            prompt, space = split_prompt(r["prompt"])  # the prompt's trailing space goes to the answers
            out.append({"prompt": prompt, "chosen": space + r["chosen"], "rejected": space + r["rejected"]})
        return Dataset.from_list(out)

    args = TrlDPOConfig(beta=cfg.beta, max_length=cfg.max_length, **trainer_args(cfg, output_dir, report_to, "dpo"))
    trainer = DPOTrainer(
        model=load_causal_lm(sft_model),
        ref_model=None,  # with a peft model: the reference is the adapter disabled
        args=args,
        train_dataset=pairs(train_rows),
        eval_dataset=pairs(eval_rows[: cfg.max_eval_rows or None]),
        processing_class=tokenizer,
        peft_config=lora_config(cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout),
    )
    return train_adapter(trainer, "DPO", cfg, tokenizer, output_dir, EVAL_KEYS)


def run(dpo: dict, sft_model: str, preference_data: str, output_dir: str, report_to: str = "none") -> dict:
    """The stage on directories (what the KFP component calls): config values, the SFT model, the pairs, the output."""
    cfg = from_dict(DPOConfig, dpo, "dpo")
    rows = {split: read_split(preference_data, split) for split in ("train", "eval")}
    metrics = train_dpo(cfg, sft_model, rows["train"], rows["eval"], output_dir, report_to)
    release_checkpoints(Path(output_dir))
    return metrics
