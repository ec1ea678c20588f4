"""One run's config: a section per stage, read from defaults, a preset, YAML files and `--set` overrides.

The field names are the contract: the same names appear in the YAML sections (`sft:`,
`reward:` ...), in `rlhf run --set sft.learning_rate=1e-4` and in the KFP pipeline parameters
(one dict parameter per stage, keyed by these names). Defaults follow the classic tutorial
(OPT-1.3B, DeBERTa-v3-base, QLoRA r=16/alpha=32); presets live in `presets/`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from kfrlhf.common.config import ConfigError, from_dict, merge_dicts, parse_set, read_yaml
from kfrlhf.data.config import DataConfig
from kfrlhf.dpo.config import DPOConfig
from kfrlhf.eval.config import EvalConfig
from kfrlhf.gate.config import GateConfig
from kfrlhf.grpo.config import GRPOConfig
from kfrlhf.ppo.config import PPOConfig
from kfrlhf.rest.config import RESTConfig
from kfrlhf.reward.config import RewardConfig
from kfrlhf.rlaif.config import RLAIFConfig
from kfrlhf.serve.config import ServeConfig
from kfrlhf.sft.config import SFTConfig

PRESETS_DIR = Path(__file__).parents[1] / "presets"
REPORT_TO = ("wandb", "tensorboard", "none")


@dataclass
class RunConfig:
    """Everything one run needs, one section per stage (`ppo`, `dpo`, `rest`, `grpo`, `rlaif`: the pipeline picks)."""

    data: DataConfig = field(default_factory=DataConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    rlaif: RLAIFConfig = field(default_factory=RLAIFConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    dpo: DPOConfig = field(default_factory=DPOConfig)
    rest: RESTConfig = field(default_factory=RESTConfig)
    grpo: GRPOConfig = field(default_factory=GRPOConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)
    report_to: str = "wandb"  # wandb (offline unless WANDB_MODE says otherwise) | tensorboard | none

    def __post_init__(self):
        # Each section checked itself when it was built; here the rules between sections.
        if self.report_to not in REPORT_TO:
            raise ConfigError(f"report_to must be wandb, tensorboard or none, not {self.report_to!r}")
        # The reward model reads prompt + response cut to reward.max_length, the prompt from the left
        # (`kfrlhf.common.models.reward_inputs`); a response budget beyond it would lose the response's end.
        for section in ("ppo", "rest", "grpo", "eval", "rlaif"):
            if getattr(self, section).max_new_tokens > self.reward.max_length:
                raise ConfigError(
                    f"{section}.max_new_tokens ({getattr(self, section).max_new_tokens}) exceeds reward.max_length "
                    f"({self.reward.max_length}): the reward model could not read a whole response"
                )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


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
    return from_dict(RunConfig, values)
