"""`rlhf stage NAME`: one stage's entry on existing artifacts, without the pipeline around it.

    rlhf stage ppo --input sft_model=runs/x/pipeline_root/.../merge-sft/model \
        --input reward_model=... --input prompt_data=... --output runs/ppo-again --set ppo.steps=4

The config is resolved as `rlhf run` resolves it (preset < files < --set); the stage's entry is the one its
KFP component calls (`StageSpec.entries`, with the section's values and `report_to`), on the processes its
`distributed` section asks for (`kfrlhf.launch.launcher.run_stage`, as the component starts it). Its
directory arguments come from `--input NAME=DIR` and `--output DIR` (`output_dir`). Iterating on one stage
then replays nothing before it.
"""

from __future__ import annotations

import inspect
from pathlib import Path

from kfrlhf.common.config import ConfigError
from kfrlhf.pipelines.definitions.run_config import RunConfig
from kfrlhf.pipelines.definitions.stages import SPECS


def entry(name: str, step: str | None = None):
    """The stage's entry function (`kfrlhf.<name>.stage:run`, or `run_<step>` for a stage of steps)."""
    import importlib

    if name not in SPECS:
        raise ConfigError(f"unknown stage {name!r} (known: {', '.join(SPECS)})")
    spec = SPECS[name]
    if spec.steps and step not in spec.steps:
        raise ConfigError(f"stage {name} runs as steps: give --step {' or --step '.join(spec.steps)}")
    ref = spec.entries[spec.steps.index(step)] if spec.steps else spec.entries[0]
    module, function = ref.split(":")
    return getattr(importlib.import_module(module), function)


def run_one(cfg: RunConfig, name: str, inputs: dict[str, str], output: str, step: str | None = None) -> dict:
    """Run stage `name`'s entry with `cfg`'s section, `inputs` (argument name -> directory) and `output`."""
    function = entry(name, step)
    params = inspect.signature(function).parameters
    values = cfg.to_dict()
    kwargs = {k: values[k] for k in params if k in values}  # its section(s) and report_to
    paths = [p for p in params if p not in kwargs and p != "output_dir"]
    unknown = sorted(set(inputs) - set(paths))
    if unknown:
        raise ConfigError(f"--input {unknown[0]}: stage {name} takes no such input (its inputs: {', '.join(paths)})")
    missing = [p for p in paths if p not in inputs and params[p].default is inspect.Parameter.empty]
    if missing:
        raise ConfigError(f"stage {name} needs --input {'=DIR --input '.join(missing)}=DIR")
    for key, path in inputs.items():
        if not Path(path).exists():
            raise ConfigError(f"--input {key}={path}: no such file or directory")
    Path(output).mkdir(parents=True, exist_ok=True)
    kwargs.update(inputs, output_dir=str(output))
    if SPECS[name].distributed:
        from kfrlhf.launch.launcher import run_stage

        return run_stage(function, name, kwargs, inputs=tuple(inputs))
    return function(**kwargs)
