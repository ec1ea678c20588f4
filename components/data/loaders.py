"""Every stage's data, loaded from any source (see `data_sources`), mapped and validated.

Normalised records:
- SFT: `{"question", "response", "system_prompt", "text"}`, text = optional system line
  + `cfg.template.format(question=...)` + response; a source with a `chosen` column and no
  `question` column gives the chosen side of its pairs (prompt + chosen answer: SFT on HH dialogues);
- preferences: `{"prompt", "chosen", "rejected"}`, from `chosen`/`rejected` columns plus an
  optional `prompt` column, or parsed from HH-RLHF dialogues (`kfrlhf.data.hh`);
- prompts: `{"prompt"}`, from a `prompt` column, the prompt of an HH dialogue in the
  `chosen` column, or a `question` put in the template.
Column names come from `DataConfig` (`question_column`, `chosen_column` ...). The source
`sample` is the built-in generated data (`kfrlhf.common.sample_data`).

The loaders raise `DataError` on the first problem; `check` lists every one.
"""

from __future__ import annotations

import logging
import random
import unicodedata
from collections.abc import Callable, Iterator
from pathlib import Path

from kfrlhf.common.data_sources import DataError, is_remote, read_jsonl, read_rows, scan, write_jsonl

from . import hh
from .config import ConfigError, DataConfig, check_template

__all__ = [
    "DataError",
    "read_rows",
    "read_jsonl",
    "write_jsonl",
    "load_sft",
    "load_preferences",
    "load_prompts",
    "check",
    "preflight",
    "check_held_out",
    "format_problem",
    "split_train_eval",
    "sft_from_pairs",
    "KINDS",
]

log = logging.getLogger(__name__)
SAMPLE = "sample"
# A text field above this is a broken export (a whole file in one cell), not a training example.
MAX_FIELD_CHARS = 1_000_000
MIN_HELD_OUT = 2


class _RowProblem(Exception):
    """A problem with one row; becomes a DataError that names the row."""


class _SkipRow(Exception):
    """A row to drop with a warning (HH pairs whose final reply is empty, as in the real data)."""


def load_sft(source: str, cfg: DataConfig) -> list[dict]:
    return _load(source, "sft", cfg)


def load_preferences(source: str, cfg: DataConfig) -> list[dict]:
    return _load(source, "preference", cfg)


def load_prompts(source: str, cfg: DataConfig) -> list[dict]:
    return _load(source, "prompts", cfg)


def check(source: str, kind: str, cfg: DataConfig) -> list[str]:
    """Every problem in `source` read as `kind` ("sft", "preference", "prompts"), one per bad row."""
    problems = []
    try:
        for item in _records(source, kind, cfg):
            if isinstance(item, DataError):
                problems.append(str(item))
    except DataError as err:  # the whole source is unusable: one message
        problems.append(str(err))
    return problems


def preflight(cfg: DataConfig) -> None:
    """Load every configured local source as its stage will, raising the first DataError.

    Remote sources (hub ids, deeplake URIs) are left to the data stage: checking them means
    downloading them.
    """
    problem = format_problem(cfg)
    if problem:
        raise ConfigError(problem)
    check_chat_template(cfg.chat_template)
    sources = [(cfg.sft_dataset, "sft"), (cfg.preference_dataset, "preference"), (cfg.prompt_dataset, "prompts")]
    for source, kind in sources:
        if source and not is_remote(source):  # empty: derived from the preference pairs
            check_held_out(source, _load(source, kind, cfg), cfg)


def check_chat_template(name: str) -> None:
    """A `data.chat_template` on this machine (a directory, a tiny or packaged model) has a chat template;
    a hub id is left to the data stage, as remote datasets are."""
    from kfrlhf.common.models import is_tiny
    from kfrlhf.common.packaged_models import is_packaged

    from .chat import chat_tokenizer

    if not name or not (is_tiny(name) or is_packaged(name) or "/" in name or name.startswith(".")):
        return
    if not (is_tiny(name) or is_packaged(name) or Path(name).is_dir()):
        if not is_remote(name):
            raise ConfigError(f"data.chat_template {name!r}: no such directory (give a model name or its directory)")
        return
    try:
        chat_tokenizer(name)
    except (OSError, ValueError) as err:
        problem = " ".join(str(err).split())[:300]
        raise ConfigError(
            problem if "data.chat_template" in problem else f"data.chat_template {name!r}: {problem}"
        ) from None


def check_held_out(source: str, rows: list, cfg: DataConfig) -> None:
    """At least 2 held-out rows: with one, the eval's standard error is infinite."""
    held_out = len(split_train_eval(rows, cfg.eval_fraction, cfg.seed)[1])
    if held_out < MIN_HELD_OUT:
        raise DataError(
            source,
            f"{len(rows)} rows leave {held_out} held out at data.eval_fraction {cfg.eval_fraction}; at least "
            f"{MIN_HELD_OUT} are needed (more rows, a larger data.max_rows or data.eval_fraction)",
        )


def format_problem(cfg: DataConfig) -> str | None:
    """Why SFT texts and PPO/eval prompts would not share one format, or None.

    With `chat_template` the data stage renders all of them alike. Without it, SFT rows from a
    question/answer source are put into `template`; when the prompts are HH dialogues, the
    template has to be HH-shaped (`...Human: {question}...Assistant:`). A local source is
    recognised by its first row, a remote one by an `hh-rlhf` name.
    """
    if cfg.chat_template or not cfg.sft_dataset or _is_dialogue_source(cfg.sft_dataset, "sft", cfg):
        return None
    if not _is_dialogue_source(cfg.prompt_dataset or cfg.preference_dataset, "prompts", cfg):
        return None
    before, _, after = cfg.template.partition("{question}")
    if before.strip().endswith("Human:") and after.strip() == "Assistant:":
        return None
    return (
        f"one prompt format from SFT to eval: SFT texts are put into data.template {cfg.template!r} but the "
        "PPO/eval prompts are HH dialogues; set data.template to '\\n\\nHuman: {question}\\n\\nAssistant: ' "
        "or data.chat_template to the model's name"
    )


def _is_dialogue_source(source: str, kind: str, cfg: DataConfig) -> bool:
    if source == SAMPLE:
        return False
    if is_remote(source):
        return "hh-rlhf" in source.lower()
    first = next(_records(source, kind, cfg), None)
    text = first.get("prompt") or first.get("question", "") if isinstance(first, dict) else ""
    return "Human:" in text and "Assistant:" in text


def split_train_eval(records: list, eval_fraction: float, seed: int) -> tuple[list, list]:
    """Deterministic split; each part keeps the input order. At least one row stays in train."""
    n = len(records)
    n_eval = min(n - 1, max(1, round(n * eval_fraction))) if n > 1 and eval_fraction > 0 else 0
    chosen = set(random.Random(seed).sample(range(n), n_eval))
    return [r for i, r in enumerate(records) if i not in chosen], [r for i, r in enumerate(records) if i in chosen]


def _load(source: str, kind: str, cfg: DataConfig) -> list[dict]:
    records = []
    for item in _records(source, kind, cfg):
        if isinstance(item, DataError):
            raise item
        records.append(item)
    return records


def _records(source: str, kind: str, cfg: DataConfig) -> Iterator[dict | DataError]:
    """Normalised records, or a DataError per bad row; raises DataError for the whole source."""
    if kind not in KINDS:
        raise ValueError(f"unknown data kind {kind!r} (known: {', '.join(KINDS)})")
    check_template(cfg.template)
    source = str(source)
    if source == SAMPLE:
        # Generated rows use the default column names whatever the mapping says.
        cfg = DataConfig(template=cfg.template, max_rows=cfg.max_rows, seed=cfg.seed)
        unit, rows = "row", enumerate(_sample(kind, cfg), 1)
    else:
        unit, rows = scan(source, cfg.split, cfg.max_rows)
    normalise, seen, skipped = None, 0, []
    for n, row in rows:
        seen += 1
        if isinstance(row, DataError):
            yield row
            continue
        if normalise is None:  # the first row decides the layout; a missing column here is a schema error
            normalise = KINDS[kind](row, cfg, source)
        try:
            yield normalise(row)
        except _SkipRow:
            skipped.append(str(n))
        except (_RowProblem, hh.HHFormatError) as err:
            yield DataError(source, str(err), n, unit)
    if skipped:
        more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
        log.warning(
            "%s: skipped %d of %d rows, HH dialogues whose final reply is empty: %s %s%s",
            source,
            len(skipped),
            seen,
            unit,
            ", ".join(skipped[:5]),
            more,
        )
    if seen == len(skipped):
        raise DataError(source, f"no usable rows: all {seen} were skipped" if seen else "no rows")


def _sample(kind: str, cfg: DataConfig) -> list[dict]:
    from kfrlhf.common import sample_data

    make = {
        "sft": sample_data.sft_records,
        "preference": sample_data.preference_records,
        "prompts": sample_data.prompt_records,
    }
    # A different seed per kind, so the three sets do not repeat the same questions;
    # data.max_rows 0 keeps the module's own default size.
    sizes = {"n": cfg.max_rows} if cfg.max_rows else {}
    return make[kind](seed=cfg.seed + list(make).index(kind), **sizes)


def _require(row: dict, source: str, *options: tuple[str, str]) -> None:
    """Schema check on the first row: one of the (column, config key) options must exist."""
    if not any(col in row for col, _ in options):
        wanted = " or ".join(f"{col!r} (data.{key})" for col, key in options)
        raise DataError(source, f"no column {wanted}; columns: {', '.join(map(str, row)) or 'none'}")


def _text(row: dict, column: str, optional: bool = False) -> str:
    value = row.get(column)
    if optional and value is None:
        return ""
    if column not in row:
        raise _RowProblem(f"missing column {column!r}")
    if not isinstance(value, str):
        raise _RowProblem(f"column {column!r} is {type(value).__name__}, expected text")
    if len(value) > MAX_FIELD_CHARS:
        raise _RowProblem(f"column {column!r} has {len(value):,} characters, more than the {MAX_FIELD_CHARS:,} allowed")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as err:  # "\ud800" in JSON decodes to a lone surrogate, which no file can hold
        raise _RowProblem(f"column {column!r} has an invalid character (a lone surrogate) at {err.start}") from None
    visible = _visible(value)
    if not visible and not optional:
        raise _RowProblem(f"column {column!r} is empty" + ("" if not value.strip() else " (only invisible characters)"))
    return value if visible else ""


def _visible(text: str) -> bool:
    """Any character that is not whitespace, a control or a format character (zero-width space, BOM ...)."""
    return any(not ch.isspace() and unicodedata.category(ch) not in ("Cc", "Cf") for ch in text)


def sft_from_pairs(pairs: list[dict], cfg: DataConfig) -> list[dict]:
    """SFT rows from the chosen side of normalised preference pairs."""
    return [_chosen_row(p["prompt"], p["chosen"], cfg.template) for p in pairs]


def _chosen_row(prompt: str, answer: str, template: str) -> dict:
    text = prompt + answer if hh.is_dialogue(prompt) else _prompt_text(prompt, "", template) + answer.strip()
    return {"question": prompt, "response": answer.strip(), "system_prompt": "", "text": text}


def _sft(first: dict, cfg: DataConfig, source: str) -> Callable[[dict], dict]:
    if cfg.question_column not in first and cfg.chosen_column in first:
        return _sft_from_chosen(first, cfg, source)
    _require(first, source, (cfg.question_column, "question_column"))
    _require(first, source, (cfg.response_column, "response_column"))

    def normalise(row: dict) -> dict:
        question, system = _question(row, cfg)
        response = _text(row, cfg.response_column).strip()
        text = _prompt_text(question, system, cfg.template) + response
        return {"question": question, "response": response, "system_prompt": system, "text": text}

    return normalise


def _sft_from_chosen(first: dict, cfg: DataConfig, source: str) -> Callable[[dict], dict]:
    """Preference pairs (or chosen dialogues alone) read as SFT rows: prompt + chosen answer."""
    pair = _preference(first, cfg, source) if cfg.rejected_column in first else None

    def normalise(row: dict) -> dict:
        if pair is not None:
            p = pair(row)
            return _chosen_row(p["prompt"], p["chosen"], cfg.template)
        text = _text(row, cfg.chosen_column)
        if not hh.is_dialogue(text):
            raise _RowProblem(f"column {cfg.chosen_column!r} is not an HH dialogue and there is no rejected column")
        prompt = hh.prompt_of(text)
        if not text[len(prompt) :].strip():
            raise _SkipRow
        return _chosen_row(prompt, text[len(prompt) :], cfg.template)

    return normalise


def _question(row: dict, cfg: DataConfig) -> tuple[str, str]:
    """`(question, system_prompt)`, stripped since the template supplies the separators."""
    return _text(row, cfg.question_column).strip(), _text(row, cfg.system_column, optional=True).strip()


def _prompt_text(question: str, system: str, template: str) -> str:
    return (f"{system}\n" if system else "") + template.format(question=question)


def _preference(first: dict, cfg: DataConfig, source: str) -> Callable[[dict], dict]:
    _require(first, source, (cfg.chosen_column, "chosen_column"))
    _require(first, source, (cfg.rejected_column, "rejected_column"))

    def normalise(row: dict) -> dict:
        chosen, rejected = _text(row, cfg.chosen_column), _text(row, cfg.rejected_column)
        if hh.is_dialogue(chosen) != hh.is_dialogue(rejected):
            which = cfg.chosen_column if hh.is_dialogue(chosen) else cfg.rejected_column
            raise _RowProblem(f"only column {which!r} is an HH dialogue: chosen and rejected must have the same format")
        if row.get(cfg.prompt_column) is not None:  # per row: a first row without a prompt decides nothing
            prompt = _text(row, cfg.prompt_column)
        elif hh.is_dialogue(chosen):
            prompt, chosen, rejected = hh.split_pair(chosen, rejected)
            if not chosen.strip() or not rejected.strip():
                raise _SkipRow
        else:
            prompt = ""
        if chosen.strip() == rejected.strip():
            raise _RowProblem("chosen and rejected are the same text")
        return {"prompt": prompt, "chosen": chosen, "rejected": rejected}

    return normalise


def _prompts(first: dict, cfg: DataConfig, source: str) -> Callable[[dict], dict]:
    _require(
        first,
        source,
        (cfg.prompt_column, "prompt_column"),
        (cfg.chosen_column, "chosen_column"),
        (cfg.question_column, "question_column"),
    )
    if cfg.prompt_column in first:
        return lambda row: {"prompt": _text(row, cfg.prompt_column)}
    if cfg.chosen_column in first:

        def from_dialogue(row: dict) -> dict:
            text = _text(row, cfg.chosen_column)
            if not hh.is_dialogue(text):
                raise _RowProblem(f"column {cfg.chosen_column!r} is not an HH dialogue, cannot derive a prompt from it")
            # With both sides of a pair, the shared prompt drops turns only one side has.
            other = row.get(cfg.rejected_column)
            if hh.is_dialogue(other):
                return {"prompt": hh.split_pair(text, other)[0]}
            return {"prompt": hh.prompt_of(text)}

        return from_dialogue
    return lambda row: {"prompt": _prompt_text(*_question(row, cfg), cfg.template)}


KINDS = {"sft": _sft, "preference": _preference, "prompts": _prompts}
