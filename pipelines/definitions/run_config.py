"""One run's config: a section per stage, read from defaults, a preset, YAML files and `--set` overrides.

The field names are the contract: the same names appear in the YAML sections (`sft:`,
`reward:` ...), in `rlhf run --set sft.learning_rate=1e-4` and in the KFP pipeline parameters
(one dict parameter per stage, keyed by these names). Defaults follow the classic tutorial
(OPT-1.3B, DeBERTa-v3-base, QLoRA r=16/alpha=32). A preset is named by `pipelines/presets/<name>.yaml`
(its run-wide values); each stage's values for it live with the stage, in `components/<stage>/presets/<name>.yaml`.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
from pathlib import Path

from kfrlhf.common.config import ConfigError, from_dict, merge_dicts, parse_set, read_yaml
from kfrlhf.pipelines.definitions.stages import SPECS

PRESETS_DIR = Path(__file__).parents[1] / "presets"
REPORT_TO = ("wandb", "tensorboard", "none")


def section_class(stage: str) -> type | None:
    """A stage's run-config section, by convention: the class in `kfrlhf.<stage>.config` whose `section` is
    the stage's name; None for a stage without a config module (merge)."""
    name = f"kfrlhf.{stage}.config"
    if importlib.util.find_spec(name) is None:
        return None
    module = importlib.import_module(name)
    found = [c for c in vars(module).values() if isinstance(c, type) and vars(c).get("section") == stage]
    if len(found) != 1:
        raise TypeError(f"{name} must define one config class whose `section` is {stage!r}, not {len(found)}")
    return found[0]


# Stage name -> its config class, in pipeline order (stages with a section only).
SECTIONS = {stage: cls for stage in SPECS if (cls := section_class(stage)) is not None}


class _Rules:
    """What RunConfig checks across its sections (each section checked itself when it was built)."""

    def __post_init__(self):
        if self.report_to not in REPORT_TO:
            raise ConfigError(f"report_to must be wandb, tensorboard or none, not {self.report_to!r}")
        # The reward model reads prompt + response cut to reward.max_length, the prompt from the left
        # (`kfrlhf.common.models.reward_inputs`); a response budget beyond it would lose the response's end.
        for section in (f.name for f in dataclasses.fields(self)):
            budget = getattr(getattr(self, section), "max_new_tokens", None)
            if budget is not None and budget > self.reward.max_length:
                raise ConfigError(
                    f"{section}.max_new_tokens ({budget}) exceeds reward.max_length "
                    f"({self.reward.max_length}): the reward model could not read a whole response"
                )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# Everything one run needs: a section per stage that has a config (named after the stage, in pipeline
# order; `ppo`, `dpo`, `rest`, `grpo`, `rlaif`: the pipeline picks), and `report_to`: wandb (offline unless
# WANDB_MODE says otherwise) | tensorboard | none.
RunConfig = dataclasses.make_dataclass(
    "RunConfig",
    [(name, cls, dataclasses.field(default_factory=cls)) for name, cls in SECTIONS.items()]
    + [("report_to", str, "wandb")],
    bases=(_Rules,),
)
RunConfig.__module__ = __name__


def preset_values(preset: str) -> dict:
    """A preset's values: `pipelines/presets/<preset>.yaml` (run-wide) and each stage's section from its folder's
    `presets/<preset>.yaml`."""
    path = PRESETS_DIR / f"{preset}.yaml"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in PRESETS_DIR.glob("*.yaml")))
        raise ConfigError(f"unknown preset {preset!r} (known: {known})")
    values = read_yaml(path)
    for stage in SECTIONS:
        (folder,) = importlib.util.find_spec(f"kfrlhf.{stage}").submodule_search_locations
        section = Path(folder) / "presets" / f"{preset}.yaml"
        if section.exists():
            values[stage] = merge_dicts(values.get(stage) or {}, read_yaml(section))
    return values


def load_config(preset: str | None = None, files: list[str | Path] = (), overrides: list[str] = ()) -> RunConfig:
    """Defaults < preset < config files (in order) < `--set` overrides."""
    values = preset_values(preset) if preset else {}
    for f in files:
        values = merge_dicts(values, read_yaml(f))
    values = merge_dicts(values, parse_set(list(overrides)))
    return from_dict(RunConfig, values)
