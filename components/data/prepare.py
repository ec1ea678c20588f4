"""Data stage: load, validate and normalise the three datasets, put prompts in the model's format, split.

Writes `train.jsonl` / `eval.jsonl` of each dataset (SFT rows, preference pairs, PPO/eval
prompts; see `kfrlhf.data.loaders` for the normalised form) into its output directory.
Prompts already in a dialogue or the template's format stay as they are.

    rlhf run --set data.preference_dataset=path/to/pairs.jsonl     # as part of the pipeline
    rlhf data check --format preference path/to/pairs.jsonl      # the same loading, no run
"""

from __future__ import annotations

from pathlib import Path

from kfrlhf.common.config import from_dict
from kfrlhf.common.data_sources import write_jsonl

from .config import DataConfig
from .loaders import check_held_out, load_preferences, load_prompts, load_sft, split_train_eval


def model_prompt(prompt: str, template: str) -> str:
    """`prompt` in the model's format: HH dialogues and already-templated prompts stay as they are."""
    marker = template.split("{question}")[-1].strip()
    stripped = prompt.rstrip()
    if "\n\nHuman:" in prompt or stripped.endswith("Assistant:") or (marker and stripped.endswith(marker)):
        return prompt
    return template.format(question=prompt)


def prepare_data(data: dict, sft_dir: str, preference_dir: str, prompt_dir: str) -> dict:
    """Load, validate and normalise the three datasets; split each into train/eval; the row counts."""
    cfg = from_dict(DataConfig, data, "data")
    prompt_source = cfg.prompt_dataset or cfg.preference_dataset
    sources = (cfg.sft_dataset, cfg.preference_dataset, prompt_source)
    sets = {
        sft_dir: load_sft(cfg.sft_dataset, cfg),
        preference_dir: [
            dict(r, prompt=model_prompt(r["prompt"], cfg.template))
            for r in load_preferences(cfg.preference_dataset, cfg)
        ],
        prompt_dir: [{"prompt": model_prompt(r["prompt"], cfg.template)} for r in load_prompts(prompt_source, cfg)],
    }
    counts = {}
    for source, (out, rows) in zip(sources, sets.items()):
        check_held_out(source, rows, cfg)
        train, held_out = split_train_eval(rows, cfg.eval_fraction, cfg.seed)
        write_jsonl(train, Path(out) / "train.jsonl")
        write_jsonl(held_out, Path(out) / "eval.jsonl")
        counts[Path(out).name] = {"train": len(train), "eval": len(held_out)}
    return counts
