"""The data stage's config: where the data comes from and how its columns map onto the stages' fields."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from kfrlhf.common.config import NON_NEGATIVE, ConfigError, StageConfig


@dataclass
class DataConfig(StageConfig):
    """Where the data comes from and how its columns map onto the stages' fields.

    Sources: `sample` (built-in, generated), a JSONL file, a Hugging Face dataset saved
    to disk or a hub id, or a deeplake dataset (local path, `hub://`, `al://`). An empty
    `sft_dataset` / `prompt_dataset` is derived from the preference pairs (prompt + chosen
    answer / the prompts), split with them, so the held-out pairs and prompts are the same
    dialogues. Format: `chat_template` names a model (or tokenizer directory) whose chat
    template renders every text (see `kfrlhf.data.chat`); empty: `template` and HH text.
    `max_prompt_chars` keeps the last turns of long HH prompts (0: off).
    """

    section: ClassVar[str] = "data"
    RULES: ClassVar[dict] = dict(
        max_rows=NON_NEGATIVE, max_prompt_chars=NON_NEGATIVE, eval_fraction=(lambda v: 0 < v < 1, "> 0 and < 1")
    )

    sft_dataset: str = "Open-Orca/OpenOrca"
    preference_dataset: str = "Anthropic/hh-rlhf"
    # Empty: prompts are derived from the preference data (HH dialogues or `prompt`).
    prompt_dataset: str = ""
    split: str = "train"
    question_column: str = "question"
    response_column: str = "response"
    system_column: str = "system_prompt"
    chosen_column: str = "chosen"
    rejected_column: str = "rejected"
    prompt_column: str = "prompt"
    template: str = "Question: {question}\n\nAnswer: "
    chat_template: str = ""
    max_prompt_chars: int = 0
    max_rows: int = 0  # 0 = all rows
    eval_fraction: float = 0.1
    seed: int = 42

    def check(self) -> None:
        check_template(self.template)


def check_template(template: str, what: str = "data.template") -> None:
    try:
        ok = "{question}" in template and template.format(question="") is not None
    except (KeyError, IndexError, ValueError):
        ok = False
    if not ok:
        raise ConfigError(f"{what} must contain {{question}} and no other fields, got {template!r}")
