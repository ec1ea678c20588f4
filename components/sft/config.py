"""The SFT stage's config."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from kfrlhf.common.config import LENGTH, NON_NEGATIVE, ConfigError, LoraFields, TrainerFields
from kfrlhf.launch.config import DistributedFields


@dataclass
class SFTConfig(TrainerFields, LoraFields, DistributedFields):
    """Supervised fine-tuning with (Q)LoRA through TRL's SFTTrainer.

    Model: `model_name` (hub id or local directory), `load_in_4bit` (QLoRA: 4-bit NF4, double
    quantisation, bf16 compute). LoRA: r 16, alpha 32, dropout 0.05, `lora_target_modules`
    (empty: all linear layers). Data: `seq_length` tokens per packed block. Training: the
    shared trainer fields (`kfrlhf.common.config.TrainerFields`) and `warmup_steps`; the eval loss is
    computed on the first `max_eval_rows` held-out rows (0: all).
    """

    section: ClassVar[str] = "sft"
    RULES: ClassVar[dict] = dict(seq_length=LENGTH, warmup_steps=NON_NEGATIVE, max_eval_rows=NON_NEGATIVE)

    HELP: ClassVar[dict] = dict(
        model_name="the policy's base model: hub id, local directory, or a tiny/packaged name",
        load_in_4bit="QLoRA: a 4-bit NF4 base (bitsandbytes), bf16 compute",
        lora_target_modules="layers the adapter wraps; empty: all linear layers",
        seq_length="tokens per training sequence (per packed block)",
        packing="cut the text stream into seq_length-token blocks",
        warmup_steps="linear learning-rate warm-up steps",
        max_eval_rows="held-out rows the eval loss is computed on (0: all)",
    )

    model_name: str = "facebook/opt-1.3b"
    load_in_4bit: bool = True
    lora_target_modules: list[str] = field(default_factory=list)  # empty = all linear
    seq_length: int = 1024
    packing: bool = True
    warmup_steps: int = 100
    max_eval_rows: int = 0

    def check(self) -> None:
        if self.load_in_4bit and self.distributed.strategy == "fsdp":
            raise ConfigError(
                f"sft.load_in_4bit cannot be sharded with sft.distributed.strategy {self.distributed.strategy} "
                "(a sharded 4-bit base needs bf16 quant storage, not wired): use ddp, or load_in_4bit false"
            )
