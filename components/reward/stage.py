"""Reward: train a sequence classifier with one output on chosen/rejected pairs (TRL RewardTrainer).

Loss: -log sigmoid(r(prompt + chosen) - r(prompt + rejected)), on the ids PPO and eval score
(`kfrlhf.common.models.reward_inputs`: a pair over `max_length` has its prompt cut from the left,
never dropped; `metrics.json` counts the cut pairs). Tokenizers without an EOS (BERT family) end
texts with their SEP token. The quality gate is the pair
accuracy on held-out pairs (the share of pairs where chosen scores above rejected): below
`min_accuracy` the stage fails rather than let PPO spend GPU hours on noise. `metrics.json`
also carries the correlation of score and answer length, a reward-hacking warning sign.
With `warm_start_pairs` the head is first fitted on frozen features (`warm_start.py`); that
probe is saved beside the model (`probe/`) and is the eval's second judge by default.
Checkpoints, resume and SIGTERM as in SFT (see `kfrlhf.common.checkpoint`).

    rlhf run --set reward.max_steps=500
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from pathlib import Path

import torch

from kfrlhf.common import distributed
from kfrlhf.common.checkpoint import atomic_dir, atomic_write_text, release_checkpoints, train_resumable
from kfrlhf.common.config import from_dict
from kfrlhf.common.data_sources import read_split
from kfrlhf.common.models import RewardScorer, load_reward_model, load_tokenizer, reward_inputs
from kfrlhf.common.trainer_args import trainer_args

from .config import RewardConfig
from .warm_start import warm_start_head

log = logging.getLogger(__name__)
PROBE = "probe"  # the warm-started head on the frozen encoder, saved before fine-tuning


class RewardGateError(RuntimeError):
    """The reward model failed its quality gate: PPO would optimise noise."""


def reward_quality(scorer, rows: list[dict]) -> dict:
    """Pair accuracy, and how strongly the score follows the answer's length (a reward-hacking risk)."""
    prompts = [r["prompt"] for r in rows]
    chosen = scorer(prompts, [r["chosen"] for r in rows])
    rejected = scorer(prompts, [r["rejected"] for r in rows])
    lengths = torch.tensor([float(len(r[k])) for k in ("chosen", "rejected") for r in rows])
    scores = torch.cat([chosen, rejected])
    return {
        "reward_accuracy": (chosen > rejected).float().mean().item(),
        "reward_length_correlation": torch.corrcoef(torch.stack([scores, lengths]))[0, 1].nan_to_num().item(),
        **length_baselines(rows, chosen, rejected),
    }


def length_baselines(rows: list[dict], chosen: torch.Tensor, rejected: torch.Tensor) -> dict:
    """The accuracy's standard error and what answer length alone gets on the same pairs ("longer wins",
    "shorter wins"; ties count half), with the margin over the better one and its paired standard error."""
    n = len(rows)
    correct = (chosen > rejected).double()
    diff = torch.tensor([float(len(r["chosen"]) - len(r["rejected"])) for r in rows], dtype=torch.double)
    longer = (diff > 0).double() + 0.5 * (diff == 0).double()
    best = longer if longer.mean() >= 0.5 else 1 - longer
    gap = correct - best

    def stderr(x: torch.Tensor) -> float:
        return (x.std() / n**0.5).item() if n > 1 else float("inf")

    return {
        "reward_accuracy_stderr": stderr(correct),
        "reward_longer_wins": longer.mean().item(),
        "reward_shorter_wins": 1 - longer.mean().item(),
        "reward_margin_over_length": gap.mean().item(),
        "reward_margin_over_length_stderr": stderr(gap),
    }


def train_reward(
    cfg: RewardConfig, train_rows: list[dict], eval_rows: list[dict], output_dir: str | Path, report_to: str = "none"
) -> dict:
    from datasets import Dataset
    from transformers import set_seed
    from trl import RewardConfig as TrlRewardConfig
    from trl import RewardTrainer

    output_dir = Path(output_dir)
    set_seed(cfg.seed)  # the fresh head's initial weights too: every process, and every rerun, starts alike
    tokenizer = load_tokenizer(cfg.model_name)  # BERT family: SEP stands in for the EOS TRL appends
    tokenizer.model_max_length = cfg.max_length
    model = load_reward_model(cfg.model_name)
    model.config.pad_token_id = tokenizer.pad_token_id
    cut_pairs = {}

    def pairs(rows, split):
        """Tokenized pairs (TRL then neither appends an EOS nor drops long pairs)."""
        prompts = [r["prompt"] for r in rows]
        chosen, cut_c = reward_inputs(tokenizer, prompts, [r["chosen"] for r in rows], cfg.max_length)
        rejected, cut_r = reward_inputs(tokenizer, prompts, [r["rejected"] for r in rows], cfg.max_length)
        cut_pairs[split] = sum(a or b for a, b in zip(cut_c, cut_r))
        if cut_pairs[split]:
            log.warning(
                "reward: %d of %d %s pairs cut to %d tokens", cut_pairs[split], len(rows), split, cfg.max_length
            )
        return {"chosen_ids": chosen, "rejected_ids": rejected}

    train_pairs, n = pairs(train_rows, "train"), cfg.warm_start_pairs
    warm = (
        warm_start_head(model, tokenizer, train_pairs["chosen_ids"][:n], train_pairs["rejected_ids"][:n]) if n else {}
    )
    if warm and distributed.is_main():  # the eval's default second judge: a model PPO never optimised against
        with atomic_dir(output_dir / PROBE) as tmp:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
    args = TrlRewardConfig(max_length=cfg.max_length, **trainer_args(cfg, output_dir, report_to, "reward"))
    trainer = RewardTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_dict(train_pairs),
        eval_dataset=Dataset.from_dict(pairs(eval_rows, "eval")),
        processing_class=tokenizer,
    )
    train_resumable(trainer, "Reward", dataclasses.asdict(cfg))
    model_dir = output_dir / "model"
    staging = output_dir / ".model.staging"
    trainer.save_model(str(staging))  # on every rank (ZeRO-3 and FSDP gather the weights); rank 0 writes
    if not distributed.is_main():
        return {}
    with atomic_dir(model_dir) as tmp:
        shutil.copytree(staging, tmp, dirs_exist_ok=True)
        tokenizer.save_pretrained(tmp)
    shutil.rmtree(staging)
    metrics = {
        **reward_quality(RewardScorer(str(model_dir)), eval_rows),
        "reward_eval_pairs": len(eval_rows),
        "reward_truncated_train_pairs": cut_pairs["train"],
        "reward_truncated_eval_pairs": cut_pairs["eval"],
        **warm,
    }
    atomic_write_text(output_dir / "metrics.json", json.dumps(metrics, indent=2))
    if metrics["reward_accuracy"] < cfg.min_accuracy:
        raise RewardGateError(
            f"reward model failed its quality gate: pair accuracy {metrics['reward_accuracy']:.3f} < "
            f"reward.min_accuracy {cfg.min_accuracy} on {len(eval_rows)} held-out pairs (model kept in {model_dir})"
        )
    return metrics


def run(reward: dict, preference_data: str, output_dir: str, report_to: str = "none") -> dict:
    """The stage on directories (what the KFP component calls): config values, the preference pairs, the output."""
    cfg = from_dict(RewardConfig, reward, "reward")
    rows = {split: read_split(preference_data, split) for split in ("train", "eval")}
    metrics = train_reward(cfg, rows["train"], rows["eval"], output_dir, report_to)
    release_checkpoints(Path(output_dir))
    return metrics
