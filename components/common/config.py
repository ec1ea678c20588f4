"""Shared config machinery: the base classes of the stage configs, type coercion, YAML and `--set`.

Each stage's config is a dataclass in its own folder (`kfrlhf.sft.config.SFTConfig` ...). They derive
from `StageConfig`, which checks every value on construction (as TRL's configs do): the rules sit
beside the fields in a `RULES` class attribute, every float must be finite, and `check()` adds the
cross-field rules. `from_dict` builds a config from YAML/`--set`/pipeline-parameter values,
refusing unknown keys and wrong types, so a config that exists is a valid one.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import stat
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import yaml


class ConfigError(ValueError):
    """A config value is unknown, of the wrong type or impossible."""


INT_MAX = 2**31 - 1  # beyond this an integer setting is a typo (ppo.steps=1e26), and torch/numpy seeds overflow


def short(value, limit: int = 60) -> str:
    """`repr(value)` cut to `limit` characters, so a message never prints a huge value."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


# Range checks: (predicate, what the message asks for).
POSITIVE = (lambda v: v > 0, "> 0")
NON_NEGATIVE = (lambda v: v >= 0, ">= 0")
UNIT = (lambda v: 0 <= v <= 1, "between 0 and 1")
DROPOUT = (lambda v: 0 <= v < 1, ">= 0 and < 1")
LENGTH = (lambda v: v >= 8, ">= 8 tokens")
STOP_STRINGS = (lambda v: all(v), "non-empty strings (an empty one ends every answer at once)")


class StageConfig:
    """Base of every stage config: `section` names it in YAML, `--set` and messages; `RULES` (per
    class, merged along the class hierarchy) maps field names to range checks."""

    section: ClassVar[str] = ""
    RULES: ClassVar[dict] = {}

    def __post_init__(self):
        self.validate()

    def validate(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{self.section}.{f.name} must be a finite number, got {short(value)}")
            if isinstance(value, int) and not isinstance(value, bool) and abs(value) > INT_MAX:
                raise ConfigError(f"{self.section}.{f.name} must be at most {INT_MAX:,}, got {value:.3g}")
        for cls in type(self).__mro__:
            for name, (ok, wanted) in cls.__dict__.get("RULES", {}).items():
                value = getattr(self, name)
                if not ok(value):
                    raise ConfigError(f"{self.section}.{name} must be {wanted}, got {short(value)}")
        self.check()
        return self

    def check(self) -> None:
        """Cross-field rules; raise ConfigError."""


@dataclass
class LoraFields:
    """The LoRA adapter a stage trains (r=16, alpha=32, dropout 0.05: the tutorial's)."""

    RULES: ClassVar[dict] = dict(lora_r=POSITIVE, lora_alpha=POSITIVE, lora_dropout=DROPOUT)

    HELP: ClassVar[dict] = dict(
        lora_r="LoRA rank: the adapter's inner dimension",
        lora_alpha="LoRA scale numerator: the update is scaled by lora_alpha / lora_r",
        lora_dropout="dropout on the adapter's input in training",
    )

    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05


@dataclass
class SamplingFields:
    """How a stage samples answers (`kfrlhf.common.sampling`): prompts cut on the left to
    `max_prompt_length` tokens, then the full distribution at `temperature` (no top-k/top-p: the
    log-probs PPO trains on and the eval KL must be those of the distribution sampled, as in TRL); an
    answer ends at EOS (a chat model's end of turn) or at the first of `stop_strings` (the next HH turn).
    `rollout_engine` samples: `hf` (transformers' generate) or `vllm` (`kfrlhf.common.rollout`, docs/rollout.md)."""

    RULES: ClassVar[dict] = dict(
        temperature=POSITIVE,
        max_prompt_length=LENGTH,
        stop_strings=STOP_STRINGS,
        rollout_engine=(lambda v: v in ("hf", "vllm"), "one of hf, vllm"),
    )

    HELP: ClassVar[dict] = dict(
        temperature="sampling temperature over the full distribution (no top-k/top-p)",
        max_prompt_length="prompt tokens kept, cut from the left",
        stop_strings="an answer ends at the first of these (and at EOS)",
        rollout_engine="what samples the answers: hf (transformers' generate) or vllm",
    )

    temperature: float = 1.0
    max_prompt_length: int = 256
    stop_strings: list[str] = dataclasses.field(default_factory=lambda: ["\n\nHuman:"])
    rollout_engine: str = "hf"


@dataclass
class TrainerFields(StageConfig):
    """The HF Trainer fields SFT, reward and DPO share (`kfrlhf.common.trainer_args` maps them)."""

    RULES: ClassVar[dict] = dict(
        learning_rate=POSITIVE,
        max_steps=POSITIVE,
        batch_size=POSITIVE,
        gradient_accumulation_steps=POSITIVE,
        eval_steps=POSITIVE,
        logging_steps=POSITIVE,
        save_steps=POSITIVE,
        checkpoint_every_minutes=NON_NEGATIVE,
    )

    HELP: ClassVar[dict] = dict(
        learning_rate="the optimizer's (AdamW) learning rate",
        max_steps="optimizer steps",
        batch_size="the global batch per optimizer step, split across the processes",
        gradient_accumulation_steps="micro-batches accumulated into one optimizer step",
        gradient_checkpointing="recompute activations in the backward pass (less memory, slower)",
        eval_steps="evaluate on the held-out rows every N steps",
        logging_steps="log the training loss every N steps",
        save_steps="checkpoint every N steps (and on SIGTERM); a rerun resumes from the newest",
        checkpoint_every_minutes="and every N minutes of training (0: off)",
        bf16="bf16 mixed precision on a GPU that has it (fp32 elsewhere, said once)",
        seed="the random seed (adapter initialisation, data order)",
    )

    learning_rate: float = 1e-4
    max_steps: int = 2000
    batch_size: int = 4
    gradient_accumulation_steps: int = 4
    gradient_checkpointing: bool = True
    eval_steps: int = 500
    logging_steps: int = 10
    save_steps: int = 500  # checkpoint every N steps (and on SIGTERM); a rerun resumes from the newest
    checkpoint_every_minutes: float = 10.0  # and every N minutes of training (0: off; kfrlhf.common.save_clock)
    bf16: bool = True
    seed: int = 42


_NAMES = {int: "an integer", float: "a number"}


def _coerce(value, tp, where: str):
    """Check `value` against the annotation `tp`, converting int -> float and str -> number."""
    origin = typing.get_origin(tp)
    if origin in (list,):
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {short(value)}")
        (item,) = typing.get_args(tp)
        return [_coerce(v, item, where) for v in value]
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return None if value is None else _coerce(value, args[0], where)
    if tp is bool:
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {short(value)}")
        return value
    if tp in (int, float):
        if isinstance(value, str):
            try:
                value = tp(value)
            except ValueError:
                raise ConfigError(f"{where}: expected {_NAMES[tp]}, got {short(value)}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected {_NAMES[tp]}, got {short(value)}")
        if not math.isfinite(value):
            raise ConfigError(f"{where} must be a finite number, got {short(value)}")
        if tp is int and value != int(value):
            raise ConfigError(f"{where}: expected an integer, got {short(value)}")
        return tp(value)
    if tp is str:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return str(value)  # `cpu: 4`, `version: 2`: YAML reads them as numbers, the user meant the text
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {short(value)}")
        return value
    raise ConfigError(f"{where}: unsupported type {tp}")


def from_dict(cls, values: dict | None, where: str = ""):
    """Build dataclass `cls` from `values`, refusing unknown keys and wrong types."""
    values = values or {}
    if not isinstance(values, dict):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {short(values)}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in values:  # YAML reads `1:` or `true:` as a number or boolean, never a field name
        if not isinstance(key, str):
            raise ConfigError(
                f"{where or 'config'}: key {short(key)} is {type(key).__name__}, not a field name: quote it or "
                f"use one of {', '.join(sorted(names))}"
            )
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"unknown key {where}{'.' if where else ''}{unknown[0]} (known: {', '.join(sorted(names))})")
    kwargs = {}
    for key, value in values.items():
        path = f"{where}.{key}" if where else key
        if dataclasses.is_dataclass(hints[key]):
            try:
                kwargs[key] = from_dict(hints[key], value, path)
            except ConfigError as err:  # a nested section's own messages name it from the top: ppo.distributed.nodes
                section = getattr(hints[key], "section", "")
                message = str(err)
                raise ConfigError(
                    f"{path}{message[len(section) :]}" if section and message.startswith(section + ".") else message
                ) from None
        else:
            kwargs[key] = _coerce(value, hints[key], path)
    return cls(**kwargs)


def merge_dicts(base: dict, override: dict) -> dict:
    """`override` on `base`; an empty section (`ppo:` with nothing under it, YAML's null) changes nothing."""
    out = dict(base)
    for key, value in (override or {}).items():
        if value is None and isinstance(out.get(key), dict):
            continue
        out[key] = merge_dicts(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def parse_set(assignments: list[str]) -> dict:
    """`["ppo.steps=10", "report_to=none"]` -> nested dict (values parsed as YAML scalars)."""
    out: dict = {}
    for item in assignments:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, for example ppo.steps=10")
        node = out
        *parents, leaf = key.strip().split(".")
        for i, part in enumerate(parents):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r} conflicts with --set {'.'.join(parents[: i + 1])}=...")
        if isinstance(node.get(leaf), dict):
            raise ConfigError(f"--set {item!r} conflicts with --set {key.strip()}.<key>=...")
        try:
            node[leaf] = yaml.load(raw, Loader=StrictLoader)  # noqa: S506 (a SafeLoader)
        except yaml.YAMLError as err:
            raise ConfigError(f"--set {item!r}: the value is not valid YAML ({_yaml_problem(err)})") from None
    return out


class StrictLoader(yaml.SafeLoader):
    """A SafeLoader that refuses aliases (a few hundred bytes of them expand to gigabytes) and repeated keys."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(None, None, "YAML aliases (*name) are not supported", event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                problem = f"key {short(key)} given twice"
                raise yaml.constructor.ConstructorError(None, None, problem, key_node.start_mark)
            seen.add(key if isinstance(key, (str, int, float, bool)) else id(key))
        return super().construct_mapping(node, deep)


# Numbers and booleans by the YAML 1.2 core schema (PyYAML reads YAML 1.1: `010` is 8, `1:30` is 90,
# `1e-5` a string, `no` false), in config files and --set alike.
_BOOL, _INT, _FLOAT = (f"tag:yaml.org,2002:{t}" for t in ("bool", "int", "float"))
StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_BOOL, _INT, _FLOAT)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
StrictLoader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
StrictLoader.add_implicit_resolver(_INT, re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"), list("-+0123456789"))
StrictLoader.add_implicit_resolver(
    _FLOAT,
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


def _yaml12_int(loader, node) -> int:
    text = loader.construct_scalar(node)
    return int(text, 0) if text.startswith(("0o", "0x")) else int(text)  # `010` is 10


StrictLoader.add_constructor(_INT, _yaml12_int)


def _yaml_problem(err: yaml.YAMLError) -> str:
    """PyYAML's multi-line message as one line: the problem and where it is."""
    mark = getattr(err, "problem_mark", None)
    where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
    return f"{getattr(err, 'problem', None) or type(err).__name__}{where}"


def regular_file(path: str | Path, what: str) -> Path:
    """`path` if it is a regular file (or a link to one). A FIFO, socket or device would block the read or
    never end, and a directory is not a file: ConfigError before it is opened; FileNotFoundError if absent."""
    mode = os.stat(path).st_mode
    if stat.S_ISDIR(mode):
        raise ConfigError(f"{what} is a directory, not a file")
    if stat.S_ISFIFO(mode):
        raise ConfigError(f"{what} is a FIFO (a named pipe): reading it waits for a writer; give a regular file")
    if not stat.S_ISREG(mode):
        raise ConfigError(f"{what} is not a regular file (a device or socket): give a regular file")
    return Path(path)


def load_yaml(path: str | Path, what: str):
    """The YAML document in `path` (StrictLoader); a problem is one line that starts with `what`."""
    try:
        regular_file(path, what)
        return yaml.load(Path(path).read_text(encoding="utf-8"), Loader=StrictLoader)  # noqa: S506 (a SafeLoader)
    except FileNotFoundError:
        raise ConfigError(f"{what} does not exist") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{what} cannot be read: {err}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{what} is not valid YAML: {_yaml_problem(err)}") from None


def read_yaml(path: str | Path) -> dict:
    data = load_yaml(path, f"config file {path}")
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"config file {path}: expected a mapping with one section per stage")
    return data or {}
