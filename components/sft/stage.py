"""SFT: supervised fine-tuning with (Q)LoRA on question/answer text, packed to a constant length.

Algorithm: load the base model (4-bit NF4 with double quantisation and bf16 compute when
`load_in_4bit`), add LoRA adapters (r, alpha, dropout) and train with TRL's SFTTrainer on
`text` rows (prompt template + answer) packed into `seq_length`-token blocks. Writes the
adapter and tokenizer to `output_dir/adapter` and the metrics to `output_dir/metrics.json`.
Checkpoints go to `output_dir/checkpoints` every `save_steps` and on SIGTERM; started again on
the same output, training resumes from the newest complete one (see `kfrlhf.common.checkpoint`).

    rlhf run --set sft.max_steps=100     # as part of the pipeline
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from kfrlhf.common import distributed
from kfrlhf.common.checkpoint import atomic_write_text, release_checkpoints, save_adapter, train_resumable
from kfrlhf.common.config import from_dict
from kfrlhf.common.data_sources import read_split
from kfrlhf.common.models import load_causal_lm, load_tokenizer, lora_config
from kfrlhf.common.trainer_args import train_loss_ends, trainer_args

from .config import SFTConfig


def sft_trainer(cfg: SFTConfig, train_rows: list[dict], eval_rows: list[dict], output_dir: Path, report_to: str):
    """TRL's SFTTrainer on the LoRA (QLoRA when `load_in_4bit`) model and the packed rows."""
    from datasets import Dataset
    from peft import prepare_model_for_kbit_training
    from transformers import set_seed
    from trl import SFTConfig as TrlSFTConfig
    from trl import SFTTrainer

    set_seed(cfg.seed)  # the adapter's initial weights too: every process, and every rerun, starts alike
    tokenizer = load_tokenizer(cfg.model_name)
    model = load_causal_lm(cfg.model_name, load_in_4bit=cfg.load_in_4bit)
    if cfg.load_in_4bit:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)
    args = TrlSFTConfig(
        lr_scheduler_type="cosine",
        warmup_steps=cfg.warmup_steps,
        max_length=cfg.seq_length,
        packing=cfg.packing,
        # The classic constant-length blocks (the text stream cut every seq_length tokens). TRL's default,
        # best-fit packing, flattens a batch into one padding-free row that only FlashAttention splits
        # back into its sequences: under sdpa/eager (OPT, CPUs) they attended across each other.
        packing_strategy="wrapped",
        dataset_text_field="text",
        **trainer_args(cfg, output_dir, report_to, "sft"),
    )
    return SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list([{"text": r["text"]} for r in train_rows]),
        eval_dataset=Dataset.from_list([{"text": r["text"]} for r in eval_rows[: cfg.max_eval_rows or None]]),
        processing_class=tokenizer,
        peft_config=lora_config(cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_target_modules or None),
    )


def train_sft(
    cfg: SFTConfig, train_rows: list[dict], eval_rows: list[dict], output_dir: str | Path, report_to: str = "none"
) -> dict:
    """Evaluates, trains (resumably), evaluates again; rank 0 writes the adapter and the metrics."""
    output_dir = Path(output_dir)
    trainer = sft_trainer(cfg, train_rows, eval_rows, output_dir, report_to)
    tokenizer = trainer.processing_class
    eval_before = trainer.evaluate()["eval_loss"]
    train_resumable(trainer, "SFT", dataclasses.asdict(cfg))
    metrics = {
        "sft_eval_loss_before": eval_before,
        "sft_eval_loss": trainer.evaluate()["eval_loss"],
        **train_loss_ends(trainer, "sft"),
    }
    if not distributed.is_main():  # rank 0 writes the outputs
        return metrics
    # Merge reads the base model's name from the adapter config.
    trainer.model.peft_config["default"].base_model_name_or_path = cfg.model_name
    save_adapter(trainer.model, tokenizer, output_dir / "adapter")
    atomic_write_text(output_dir / "metrics.json", json.dumps(metrics, indent=2))
    return metrics


def run(sft: dict, sft_data: str, output_dir: str, report_to: str = "none") -> dict:
    """The stage on directories (what the KFP component calls): config values, the SFT dataset, the output."""
    cfg = from_dict(SFTConfig, sft, "sft")
    metrics = train_sft(cfg, read_split(sft_data, "train"), read_split(sft_data, "eval"), output_dir, report_to)
    release_checkpoints(Path(output_dir))
    return metrics
