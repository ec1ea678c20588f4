"""One typed config per stage, read from defaults, a preset, a YAML file and `--set` overrides.

The field names are the contract: the same names appear in the YAML sections
(`sft:`, `reward:` ...), in `rlhf run --set sft.learning_rate=1e-4` and in the KFP
pipeline parameters (one dict parameter per stage, keyed by these names).
Defaults follow the classic tutorial (OPT-1.3B, DeBERTa-v3-base, QLoRA r=16/alpha=32).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml


class ConfigError(ValueError):
    """A config value is unknown, of the wrong type or impossible."""


@dataclass
class DataConfig:
    """Where the data comes from and how its columns map onto the stages' fields.

    Sources: `sample` (built-in, generated), a JSONL file, a Hugging Face dataset saved
    to disk or a hub id, or a deeplake dataset (local path, `hub://`, `al://`).
    """

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
    max_rows: int = 0  # 0 = all rows
    eval_fraction: float = 0.1
    seed: int = 42


@dataclass
class SFTConfig:
    """Supervised fine-tuning with (Q)LoRA through TRL's SFTTrainer."""

    model_name: str = "facebook/opt-1.3b"
    # QLoRA: 4-bit NF4, double quantisation, bf16 compute.
    load_in_4bit: bool = True
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: list[str] = field(default_factory=list)  # empty = all linear
    seq_length: int = 1024
    packing: bool = True
    learning_rate: float = 1e-4
    max_steps: int = 2000
    batch_size: int = 4
    gradient_accumulation_steps: int = 4
    gradient_checkpointing: bool = True
    warmup_steps: int = 100
    eval_steps: int = 500
    logging_steps: int = 10
    save_steps: int = 500  # checkpoint every N steps (and on SIGTERM); a rerun resumes from the newest
    bf16: bool = True
    seed: int = 42


@dataclass
class RewardConfig:
    """Reward model: a sequence classifier with one output, trained on chosen/rejected pairs."""

    model_name: str = "microsoft/deberta-v3-base"
    max_length: int = 512
    learning_rate: float = 2e-5
    max_steps: int = 2000
    batch_size: int = 8
    gradient_accumulation_steps: int = 1
    gradient_checkpointing: bool = False
    eval_steps: int = 500
    logging_steps: int = 10
    save_steps: int = 500  # checkpoint every N steps (and on SIGTERM); a rerun resumes from the newest
    bf16: bool = True
    min_accuracy: float = 0.55  # quality gate: the stage fails below this held-out pair accuracy
    seed: int = 42


@dataclass
class PPOConfig:
    """The project's own PPO (see components/ppo): LoRA policy, value head, adaptive KL."""

    learning_rate: float = 1.41e-5
    steps: int = 200
    batch_size: int = 32
    mini_batch_size: int = 4
    ppo_epochs: int = 4
    init_kl_coef: float = 0.2
    adaptive_kl: bool = True
    target_kl: float = 6.0
    kl_horizon: int = 10000
    gamma: float = 1.0
    lam: float = 0.95
    cliprange: float = 0.2
    cliprange_value: float = 0.2
    vf_coef: float = 0.1
    normalize_reward: bool = True
    # Response lengths are sampled uniformly from [min_new_tokens, max_new_tokens].
    min_new_tokens: int = 32
    max_new_tokens: int = 400
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    max_prompt_length: int = 256
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    save_every: int = 50
    kl_limit: float = 0.0  # hard stop when the mean KL exceeds it; 0 = off
    reward_limit: float = 0.0  # hard stop when the mean raw reward exceeds it (reward hacking); 0 = off
    max_rollbacks: int = 0  # on divergence: back to an earlier checkpoint at half the learning rate, at most N times
    seed: int = 42


@dataclass
class DPOConfig:
    """DPO, the alternative to reward model + PPO: a LoRA adapter on the SFT model trained with TRL's
    DPOTrainer on chosen/rejected pairs; the reference is the SFT model (the adapter disabled)."""

    beta: float = 0.1  # strength of the implicit KL constraint to the reference
    learning_rate: float = 5e-6
    max_steps: int = 1000
    batch_size: int = 4
    gradient_accumulation_steps: int = 4
    gradient_checkpointing: bool = True
    max_length: int = 512  # prompt + answer tokens
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    eval_steps: int = 500
    logging_steps: int = 10
    save_steps: int = 500  # checkpoint every N steps (and on SIGTERM); a rerun resumes from the newest
    bf16: bool = True
    seed: int = 42


@dataclass
class EvalConfig:
    """Compare the tuned model with the SFT model on held-out prompts."""

    num_prompts: int = 64
    max_new_tokens: int = 128
    max_prompt_length: int = 256
    temperature: float = 0.7
    top_k: int = 0
    top_p: float = 1.0
    batch_size: int = 16
    num_samples: int = 8  # rows in the report's sample table
    kl_bound: float = 10.0  # the report flags a KL above this
    seed: int = 1234


@dataclass
class RunConfig:
    """Everything one run needs, one section per stage (`ppo` or `dpo`: the pipeline picks one)."""

    data: DataConfig = field(default_factory=DataConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    dpo: DPOConfig = field(default_factory=DPOConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    report_to: str = "wandb"  # wandb (offline unless WANDB_MODE says otherwise) | tensorboard | none

    def validate(self) -> "RunConfig":
        for section, rules in _RULES.items():
            for name, (ok, wanted) in rules.items():
                value = getattr(getattr(self, section), name)
                if not ok(value):
                    raise ConfigError(f"{section}.{name} must be {wanted}, got {value!r}")
        check_template(self.data.template)
        p = self.ppo
        if p.batch_size % p.mini_batch_size:
            raise ConfigError(
                f"ppo.batch_size ({p.batch_size}) must be divisible by ppo.mini_batch_size ({p.mini_batch_size})"
            )
        if not 0 < p.min_new_tokens <= p.max_new_tokens:
            raise ConfigError("ppo.min_new_tokens must be > 0 and <= ppo.max_new_tokens")
        if self.report_to not in ("wandb", "tensorboard", "none"):
            raise ConfigError(f"report_to must be wandb, tensorboard or none, not {self.report_to!r}")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# Per-field range checks: section -> field -> (predicate, what the message asks for).
_POS = (lambda v: v > 0, "> 0")
_NONNEG = (lambda v: v >= 0, ">= 0")
_UNIT = (lambda v: 0 <= v <= 1, "between 0 and 1")
_DROPOUT = (lambda v: 0 <= v < 1, ">= 0 and < 1")
_TOP_P = (lambda v: 0 < v <= 1, "> 0 and <= 1")
_LENGTH = (lambda v: v >= 8, ">= 8 tokens")
_TRAINING = dict(learning_rate=_POS, max_steps=_POS, batch_size=_POS, gradient_accumulation_steps=_POS,
                 eval_steps=_POS, logging_steps=_POS, save_steps=_POS)
_LORA = dict(lora_r=_POS, lora_alpha=_POS, lora_dropout=_DROPOUT)
_RULES = {
    "data": dict(max_rows=_NONNEG, eval_fraction=(lambda v: 0 < v < 1, "> 0 and < 1")),
    "sft": dict(_TRAINING, **_LORA, seq_length=_LENGTH, warmup_steps=_NONNEG),
    "reward": dict(_TRAINING, max_length=_LENGTH, min_accuracy=_UNIT),
    "ppo": dict(_LORA, learning_rate=_POS, steps=_POS, batch_size=_POS, mini_batch_size=_POS, ppo_epochs=_POS,
                init_kl_coef=_NONNEG, target_kl=_POS, kl_horizon=_POS, gamma=_UNIT, lam=_UNIT, cliprange=_POS,
                cliprange_value=_POS, vf_coef=_NONNEG, temperature=_POS, top_k=_NONNEG, top_p=_TOP_P,
                max_prompt_length=_LENGTH, save_every=_NONNEG, kl_limit=_NONNEG, reward_limit=_NONNEG,
                max_rollbacks=_NONNEG),
    "dpo": dict(_TRAINING, **_LORA, beta=_POS, max_length=_LENGTH),
    "eval": dict(num_prompts=_POS, max_new_tokens=_POS, max_prompt_length=_LENGTH, temperature=_POS, top_k=_NONNEG, top_p=_TOP_P,
                 batch_size=_POS, num_samples=_NONNEG, kl_bound=_POS),
}
STAGES = ("data", "sft", "reward", "ppo", "dpo", "eval")


def check_template(template: str) -> None:
    try:
        ok = "{question}" in template and template.format(question="") is not None
    except (KeyError, IndexError, ValueError):
        ok = False
    if not ok:
        raise ConfigError(f"data.template must contain {{question}} and no other fields, got {template!r}")


PRESETS_DIR = Path(__file__).parent / "presets"


_NAMES = {int: "an integer", float: "a number"}


def _coerce(value, tp, where: str):
    """Check `value` against the annotation `tp`, converting int -> float and str -> number."""
    origin = typing.get_origin(tp)
    if origin in (list,):
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item,) = typing.get_args(tp)
        return [_coerce(v, item, where) for v in value]
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return None if value is None else _coerce(value, args[0], where)
    if tp is bool:
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp in (int, float):
        if isinstance(value, str):
            try:
                value = tp(value)
            except ValueError:
                raise ConfigError(f"{where}: expected {_NAMES[tp]}, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected {_NAMES[tp]}, got {value!r}")
        if tp is int and value != int(value):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return tp(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported type {tp}")


def from_dict(cls, values: dict | None, where: str = ""):
    """Build dataclass `cls` from `values`, refusing unknown keys and wrong types."""
    values = values or {}
    if not isinstance(values, dict):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"unknown key {where}{'.' if where else ''}{unknown[0]} (known: {', '.join(sorted(names))})")
    kwargs = {}
    for key, value in values.items():
        path = f"{where}.{key}" if where else key
        if dataclasses.is_dataclass(hints[key]):
            kwargs[key] = from_dict(hints[key], value, path)
        else:
            kwargs[key] = _coerce(value, hints[key], path)
    return cls(**kwargs)


def merge_dicts(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in (override or {}).items():
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
        for part in parents:
            node = node.setdefault(part, {})
        try:
            node[leaf] = yaml.safe_load(raw)
        except yaml.YAMLError as err:
            raise ConfigError(f"--set {item!r}: the value is not valid YAML ({_yaml_problem(err)})") from None
    return out


def _yaml_problem(err: yaml.YAMLError) -> str:
    """PyYAML's multi-line message as one line: the problem and where it is."""
    mark = getattr(err, "problem_mark", None)
    where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
    return f"{getattr(err, 'problem', None) or type(err).__name__}{where}"


def read_yaml(path: str | Path) -> dict:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"config file {path} cannot be read: {err}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {_yaml_problem(err)}") from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"config file {path}: expected a mapping with one section per stage")
    return data or {}


def load_config(preset: str | None = None, files: list[str | Path] = (), overrides: list[str] = ()) -> RunConfig:
    """Defaults < preset < config files (in order) < `--set` overrides."""
    values: dict = {}
    if preset:
        path = PRESETS_DIR / f"{preset}.yaml"
        if not path.exists():
            known = ", ".join(sorted(p.stem for p in PRESETS_DIR.glob("*.yaml")))
            raise ConfigError(f"unknown preset {preset!r} (known: {known})")
        values = read_yaml(path)
    for f in files:
        values = merge_dicts(values, read_yaml(f))
    values = merge_dicts(values, parse_set(list(overrides)))
    return from_dict(RunConfig, values).validate()
