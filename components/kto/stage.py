"""KTO: Kahneman-Tversky Optimisation, alignment from unpaired good and bad answers (TRL KTOTrainer).

Algorithm: the policy is the merged SFT model with a fresh LoRA adapter; the reference is the same weights
with the adapter disabled. KTO needs no pairs: each example is one answer with a label, desirable or not.
Here they come from the preference pairs, each giving its chosen answer as desirable and its rejected one as
undesirable (`unpaired`). With the implicit reward r(y) = log pi(y|x) - log pi_ref(y|x) and z a batch estimate
of the KL to the reference (each prompt with another example's answer), a desirable answer's loss is
1 - sigmoid(beta (r - z)), an undesirable one's 1 - sigmoid(beta (z - r)), weighted by `desirable_weight` /
`undesirable_weight`: the policy raises the good answers' likelihood above the reference's and lowers the bad
ones', with no reward model and no sampling. Writes the adapter and tokenizer to `output_dir/adapter` and the
metrics (KTO eval loss, implicit rewards of both kinds and their margin, before and after) to
`output_dir/metrics.json`. Checkpoints, resume and SIGTERM as in SFT (see `kfrlhf.common.checkpoint`).

    rlhf run --pipeline kto --set kto.max_steps=100
"""

from __future__ import annotations

from pathlib import Path

from kfrlhf.common.checkpoint import release_checkpoints
from kfrlhf.common.config import from_dict
from kfrlhf.common.data_sources import read_split
from kfrlhf.common.models import load_causal_lm, load_tokenizer, lora_config
from kfrlhf.common.trainer_args import split_prompt, train_adapter, trainer_args

from .config import KTOConfig

# KTOTrainer's eval logs -> our metric names.
EVAL_KEYS = {
    "eval_loss": "kto_eval_loss",
    "eval_rewards/chosen": "kto_reward_desirable",
    "eval_rewards/rejected": "kto_reward_undesirable",
    "eval_rewards/margins": "kto_reward_margin",
}


def unpaired(rows: list[dict]) -> list[dict]:
    """Preference pairs {prompt, chosen, rejected} -> KTO's unpaired rows {prompt, completion, label}: the chosen
    answer desirable, the rejected one undesirable, in pair order. The prompt's trailing space goes to the
    answers (`split_prompt`), as in DPO."""
    out = []
    for r in rows:
        prompt, space = split_prompt(r["prompt"])
        out.append({"prompt": prompt, "completion": space + r["chosen"], "label": True})
        out.append({"prompt": prompt, "completion": space + r["rejected"], "label": False})
    return out


def train_kto(
    cfg: KTOConfig,
    sft_model: str,
    train_rows: list[dict],
    eval_rows: list[dict],
    output_dir: str | Path,
    report_to: str = "none",
) -> dict:
    """`sft_model`: the merged SFT model's directory; rows: preference pairs {prompt, chosen, rejected}, prompts
    in model format (made unpaired here)."""
    from datasets import Dataset
    from transformers import set_seed
    from trl import KTOConfig as TrlKTOConfig
    from trl import KTOTrainer

    output_dir = Path(output_dir)
    set_seed(cfg.seed)  # the adapter's initial weights too: every process, and every rerun, starts alike
    tokenizer = load_tokenizer(sft_model)
    args = TrlKTOConfig(
        beta=cfg.beta,
        desirable_weight=cfg.desirable_weight,
        undesirable_weight=cfg.undesirable_weight,
        max_length=cfg.max_length,
        **trainer_args(cfg, output_dir, report_to, "kto"),
    )
    trainer = KTOTrainer(
        model=load_causal_lm(sft_model),
        ref_model=None,  # with a peft model: the reference is the adapter disabled
        args=args,
        train_dataset=Dataset.from_list(unpaired(train_rows)),
        eval_dataset=Dataset.from_list(unpaired(eval_rows[: cfg.max_eval_rows or None])),
        processing_class=tokenizer,
        peft_config=lora_config(cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout),
    )
    return train_adapter(trainer, "KTO", cfg, tokenizer, output_dir, EVAL_KEYS)


def run(kto: dict, sft_model: str, preference_data: str, output_dir: str, report_to: str = "none") -> dict:
    """The stage on directories (what the KFP component calls): config values, the SFT model, the pairs, the output."""
    cfg = from_dict(KTOConfig, kto, "kto")
    rows = {split: read_split(preference_data, split) for split in ("train", "eval")}
    metrics = train_kto(cfg, sft_model, rows["train"], rows["eval"], output_dir, report_to)
    release_checkpoints(Path(output_dir))
    return metrics
