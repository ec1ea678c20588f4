"""The data stage's config: where the data comes from and how its columns map onto the stages' fields."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from kfrlhf.common.config import NON_NEGATIVE, ConfigError, StageConfig

# Above half held out, most of the data trains nothing: 0.95 for 0.05 was found only after the GPU time.
HELD_OUT = (lambda v: 0 < v <= 0.5, "> 0 and at most 0.5 (the share held out; the rest trains)")


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
    RULES: ClassVar[dict] = dict(max_rows=NON_NEGATIVE, max_prompt_chars=NON_NEGATIVE, eval_fraction=HELD_OUT)

    HELP: ClassVar[dict] = dict(
        sft_dataset="SFT rows: sample, a file, a HF dataset or a deeplake URI; empty: the pairs' chosen side",
        preference_dataset="chosen/rejected pairs (or HH dialogues), the same kinds of source",
        prompt_dataset="prompts for PPO, GRPO, ReST and eval; empty: the preference data's prompts",
        split="the split read from a Hugging Face dataset",
        question_column="SFT rows' question column",
        response_column="SFT rows' answer column",
        system_column="SFT rows' optional system-prompt column",
        chosen_column="preference rows' preferred answer column",
        rejected_column="preference rows' other answer column",
        prompt_column="the prompt column (preference and prompt rows)",
        template="how a question becomes a prompt (must contain {question}); used without chat_template",
        chat_template="a model or tokenizer directory whose chat template renders every text; empty: template, HH text",
        max_prompt_chars="keep the last turns of longer HH prompts (0: off)",
        max_rows="rows read from each source (0: all)",
        eval_fraction="share of the rows held out for the stages' evals",
        seed="the split's seed",
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
