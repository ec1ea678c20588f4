"""Stage entry points on directories: what each KFP component calls.

Each function takes its stage's config as a plain dict (the pipeline parameter, keyed by the
config dataclass's field names), input directories and an output directory. Datasets travel
between stages as directories holding `train.jsonl` / `eval.jsonl` in the normalised form
of `kfrlhf.data`, with prompts already in the model's prompt format.
"""

from __future__ import annotations

import json
from pathlib import Path

from . import config as C
from .checkpoint import atomic_write_text, release_checkpoints


def _cfg(cls, values: dict, section: str):
    """The stage's config, checked like `rlhf run` checks it: a run started from the KFP UI
    bypasses the CLI, so a bad value must still fail here, before any model loads."""
    cfg = C.from_dict(cls, values, section)
    C.RunConfig(**{section: cfg}).validate()
    return cfg


def model_prompt(prompt: str, template: str) -> str:
    """`prompt` in the model's format: HH dialogues and already-templated prompts stay as they are."""
    marker = template.split("{question}")[-1].strip()
    stripped = prompt.rstrip()
    if "\n\nHuman:" in prompt or stripped.endswith("Assistant:") or (marker and stripped.endswith(marker)):
        return prompt
    return template.format(question=prompt)


def prepare_data(data: dict, sft_dir: str, preference_dir: str, prompt_dir: str) -> dict:
    """Load, validate and normalise the three datasets; split each into train/eval."""
    from .data import load_preferences, load_prompts, load_sft, split_train_eval, write_jsonl

    cfg = _cfg(C.DataConfig, data, "data")
    prompt_source = cfg.prompt_dataset or cfg.preference_dataset
    sets = {
        sft_dir: load_sft(cfg.sft_dataset, cfg),
        preference_dir: [dict(r, prompt=model_prompt(r["prompt"], cfg.template)) for r in load_preferences(cfg.preference_dataset, cfg)],
        prompt_dir: [{"prompt": model_prompt(r["prompt"], cfg.template)} for r in load_prompts(prompt_source, cfg)],
    }
    counts = {}
    for out, rows in sets.items():
        train, held_out = split_train_eval(rows, cfg.eval_fraction, cfg.seed)
        write_jsonl(train, Path(out) / "train.jsonl")
        write_jsonl(held_out, Path(out) / "eval.jsonl")
        counts[Path(out).name] = {"train": len(train), "eval": len(held_out)}
    return counts


def _rows(dataset_dir: str, split: str) -> list[dict]:
    from .data import read_jsonl

    return read_jsonl(Path(dataset_dir) / f"{split}.jsonl")


def _prompts(dataset_dir: str, split: str) -> list[str]:
    return [r["prompt"] for r in _rows(dataset_dir, split)]


def run_sft(sft: dict, sft_data: str, output_dir: str, report_to: str = "none") -> dict:
    from .sft import train_sft

    cfg = _cfg(C.SFTConfig, sft, "sft")
    metrics = train_sft(cfg, _rows(sft_data, "train"), _rows(sft_data, "eval"), output_dir, report_to)
    release_checkpoints(Path(output_dir))
    return metrics


def run_merge(adapter_dir: str, output_dir: str, base_dir: str | None = None) -> str:
    from .merge import merge_adapter

    return str(merge_adapter(Path(adapter_dir) / "adapter", output_dir, base=base_dir))


def run_reward(reward: dict, preference_data: str, output_dir: str, report_to: str = "none") -> dict:
    from .reward import train_reward

    cfg = _cfg(C.RewardConfig, reward, "reward")
    metrics = train_reward(cfg, _rows(preference_data, "train"), _rows(preference_data, "eval"), output_dir, report_to)
    release_checkpoints(Path(output_dir))
    return metrics


def run_ppo(ppo: dict, sft_model: str, reward_model: str, prompt_data: str, output_dir: str,
            report_to: str = "none") -> dict:
    from transformers import AutoModelForCausalLM

    from .models import LOAD_KWARGS, RewardScorer, device, load_tokenizer
    from .ppo.trainer import run_ppo as ppo_loop
    from .tracking import step_logger

    cfg = _cfg(C.PPOConfig, ppo, "ppo")
    model = AutoModelForCausalLM.from_pretrained(sft_model, **LOAD_KWARGS).to(device())
    tokenizer = load_tokenizer(sft_model, padding_side="left")
    prompts = _prompts(prompt_data, "train")
    scorer = RewardScorer(str(Path(reward_model) / "model"))
    log_fn = step_logger(report_to, output_dir, "ppo", ppo)
    result = ppo_loop(cfg, model, tokenizer, prompts, scorer, output_dir=output_dir, log_fn=log_fn)
    metrics = {k: v for k, v in result.items() if k != "history"}
    atomic_write_text(Path(output_dir) / "metrics.json", json.dumps(metrics, indent=2))
    atomic_write_text(Path(output_dir) / "history.json", json.dumps(result["history"], indent=1))
    release_checkpoints(Path(output_dir))
    return metrics


def run_dpo(dpo: dict, sft_model: str, preference_data: str, output_dir: str, report_to: str = "none") -> dict:
    from .dpo import train_dpo

    cfg = _cfg(C.DPOConfig, dpo, "dpo")
    rows = {split: _rows(preference_data, split) for split in ("train", "eval")}
    metrics = train_dpo(cfg, sft_model, rows["train"], rows["eval"], output_dir, report_to)
    release_checkpoints(Path(output_dir))
    return metrics


def run_eval(eval: dict, sft_model: str, tuned_model: str, reward_model: str, prompt_data: str, output_dir: str,
             upstream: dict | None = None) -> dict:
    from .evaluate import evaluate

    cfg = _cfg(C.EvalConfig, eval, "eval")
    prompts = _prompts(prompt_data, "eval")
    return evaluate(cfg, sft_model, tuned_model, str(Path(reward_model) / "model"), prompts, output_dir, upstream)
