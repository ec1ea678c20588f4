"""ReST Improve: keep the Grow step's answers above this step's threshold and fine-tune on them.

Filter: each answer's reward is standardised over the Grow step's answers, z = (r - mean) / std, and
the answers with z > `RESTConfig.threshold(iteration)` are kept; the threshold rises each iteration,
so later steps learn from an ever smaller top share of an ever better policy. Improve: filtered SFT
(behaviour cloning of the kept answers, loss on the answer tokens only, an EOS appended) with TRL's
SFTTrainer on the LoRA adapter of the previous Improve step (a fresh one at iteration 0) over the
merged SFT model. Writes the adapter to `output_dir/adapter` and the metrics (threshold, answers kept,
their mean reward, training loss) to `output_dir/metrics.json`. Checkpoints and resume as in SFT.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
from pathlib import Path

from kfrlhf.common.checkpoint import atomic_write_text, save_adapter, train_resumable
from kfrlhf.common.data_sources import DataError
from kfrlhf.common.models import load_causal_lm, load_tokenizer, lora_config
from kfrlhf.common.trainer_args import train_loss_ends, trainer_args

from .config import RESTConfig


def standardised(rewards: list[float]) -> list[float]:
    """(r - mean) / std over all rewards (population std); all zeros when every reward is the same."""
    mean, std = statistics.fmean(rewards), statistics.pstdev(rewards)
    return [(r - mean) / std if std > 0 else 0.0 for r in rewards]


def select(rows: list[dict], threshold: float) -> list[dict]:
    """The rows whose standardised reward is above `threshold`."""
    return [row for row, z in zip(rows, standardised([r["reward"] for r in rows])) if z > threshold]


def improve(
    cfg: RESTConfig,
    iteration: int,
    sft_model: str,
    adapter: str | None,
    rows: list[dict],
    output_dir: str | Path,
    report_to: str = "none",
) -> dict:
    """`rows`: the Grow step's samples; `adapter`: the previous Improve step's adapter (None at iteration 0)."""
    from datasets import Dataset
    from trl import SFTConfig as TrlSFTConfig
    from trl import SFTTrainer

    output_dir = Path(output_dir)
    threshold = cfg.threshold(iteration)
    kept = select(rows, threshold)
    if not kept:
        raise DataError(
            f"rest iteration {iteration}",
            f"no answer scores more than {threshold:g} standard deviations above the mean; "
            "lower rest.threshold_start or rest.threshold_step",
        )
    tokenizer = load_tokenizer(sft_model)
    model = load_causal_lm(sft_model)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter, is_trainable=True)
    args = {**trainer_args(cfg, output_dir, report_to, f"rest-{iteration}"), "eval_strategy": "no"}
    trainer = SFTTrainer(
        model=model,
        args=TrlSFTConfig(max_length=cfg.max_prompt_length + cfg.max_new_tokens + 1, **args),
        train_dataset=Dataset.from_list([{"prompt": r["prompt"], "completion": r["response"]} for r in kept]),
        processing_class=tokenizer,
        peft_config=None if adapter else lora_config(cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout),
    )
    train_resumable(trainer, f"ReST improve {iteration}", dataclasses.asdict(cfg))
    metrics = {
        "rest_threshold": threshold,
        "rest_kept": len(kept),
        "rest_kept_fraction": len(kept) / len(rows),
        "rest_kept_reward_mean": statistics.fmean(r["reward"] for r in kept),
        **train_loss_ends(trainer, "rest"),
    }
    save_adapter(trainer.model, tokenizer, output_dir / "adapter")
    atomic_write_text(output_dir / "metrics.json", json.dumps(metrics, indent=2))
    return metrics
