"""Data stage: load, validate and normalise the three datasets, put texts in the model's format, split.

Writes `train.jsonl` / `eval.jsonl` of each dataset (SFT rows, preference pairs, PPO/eval
prompts; see `kfrlhf.data.loaders` for the normalised form) into its output directory. With
`data.chat_template` every text is rendered with that chat template (`kfrlhf.data.chat`);
otherwise prompts already in a dialogue or the template's format stay as they are. An empty
`sft_dataset` / `prompt_dataset` comes from the preference pairs, so all three share one split.

    rlhf run --set data.preference_dataset=path/to/pairs.jsonl     # as part of the pipeline
    rlhf data check --format preference path/to/pairs.jsonl      # the same loading, no run
"""

from __future__ import annotations

from pathlib import Path

from kfrlhf.common.config import from_dict
from kfrlhf.common.data_sources import DataError, write_jsonl

from . import chat, hh
from .config import DataConfig
from .loaders import check_held_out, load_preferences, load_prompts, load_sft, sft_from_pairs, split_train_eval


def model_prompt(prompt: str, template: str) -> str:
    """`prompt` in the model's format: HH dialogues and already-templated prompts stay as they are."""
    marker = template.split("{question}")[-1].strip()
    stripped = prompt.rstrip()
    if "\n\nHuman:" in prompt or stripped.endswith("Assistant:") or (marker and stripped.endswith(marker)):
        return prompt
    return template.format(question=prompt)


class Formatter:
    """Prompts, answers and SFT texts in one format: the chat template's, or the plain template/HH text."""

    def __init__(self, cfg: DataConfig):
        self.cfg = cfg
        self.tokenizer = chat.chat_tokenizer(cfg.chat_template) if cfg.chat_template else None

    def _short(self, prompt: str) -> str:
        limit = self.cfg.max_prompt_chars
        return hh.shorten(prompt, limit) if limit and hh.is_dialogue(prompt) else prompt

    def prompt(self, prompt: str) -> str:
        if self.tokenizer is None:
            return model_prompt(self._short(prompt), self.cfg.template)
        return chat.render_prompt(self.tokenizer, self._short(prompt), template=self.cfg.template)

    def answer(self, answer: str) -> str:
        return answer if self.tokenizer is None else answer.strip()

    def sft(self, row: dict) -> dict:
        question = self._short(row["question"])
        if self.tokenizer is not None:
            text = chat.render_dialogue(
                self.tokenizer, question, row["response"], row["system_prompt"], self.cfg.template
            )
        elif question != row["question"]:
            text = question + " " + row["response"]
        else:
            text = row["text"]
        return dict(row, text=text)


def run(data: dict, sft_dir: str, preference_dir: str, prompt_dir: str) -> dict:
    """Load, validate and normalise the three datasets; split each into train/eval; the row counts."""
    cfg = from_dict(DataConfig, data, "data")
    fmt = Formatter(cfg)
    pairs = load_preferences(cfg.preference_dataset, cfg)
    sft = load_sft(cfg.sft_dataset, cfg) if cfg.sft_dataset else sft_from_pairs(pairs, cfg)
    prompts = load_prompts(cfg.prompt_dataset, cfg) if cfg.prompt_dataset else [{"prompt": r["prompt"]} for r in pairs]
    if not all(r["prompt"].strip() for r in prompts):
        raise DataError(
            cfg.preference_dataset, "pairs without prompts cannot give PPO/eval prompts: set data.prompt_dataset"
        )
    # Where each set came from, for the held-out check's message.
    sources = (
        cfg.sft_dataset or cfg.preference_dataset,
        cfg.preference_dataset,
        cfg.prompt_dataset or cfg.preference_dataset,
    )
    sets = {
        sft_dir: [fmt.sft(r) for r in sft],
        preference_dir: [
            dict(r, prompt=fmt.prompt(r["prompt"]), chosen=fmt.answer(r["chosen"]), rejected=fmt.answer(r["rejected"]))
            for r in pairs
        ],
        prompt_dir: [{"prompt": fmt.prompt(r["prompt"])} for r in prompts],
    }
    counts = {}
    for source, (out, rows) in zip(sources, sets.items()):
        check_held_out(source, rows, cfg)
        train, held_out = split_train_eval(rows, cfg.eval_fraction, cfg.seed)
        write_jsonl(train, Path(out) / "train.jsonl")
        write_jsonl(held_out, Path(out) / "eval.jsonl")
        counts[Path(out).name] = {"train": len(train), "eval": len(held_out)}
    return counts
