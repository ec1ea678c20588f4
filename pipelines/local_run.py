"""`rlhf run`: a real KFP pipeline (RLHF by default, or DPO) on this machine through `kfp.local` (SubprocessRunner).

Each task runs as a subprocess of this Python (`use_venv=False`: the project is installed
here, as it is in the stage images), passing artifacts through `OUTPUT/pipeline_root`.
When the pipeline is done, the eval report is copied to `OUTPUT/report.json` / `report.md`.
Training stages checkpoint under `OUTPUT/checkpoints/<config hash>/<task>/<output>` (dropped when
the stage succeeds): `rlhf run` again with the same config and output resumes the stage that died.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from pathlib import Path

from kfrlhf.common.config import ConfigError
from kfrlhf.data.loaders import preflight
from kfrlhf.pipelines.run_config import RunConfig


def run_local(cfg: RunConfig, output: str | Path, pipeline: str = "rlhf") -> dict:
    """Run the pipeline `pipeline` (a name in kfrlhf.pipelines.registry) with the config's sections as parameters."""
    from kfrlhf.pipelines.registry import PIPELINES

    if pipeline not in PIPELINES:
        raise ConfigError(f"unknown pipeline {pipeline!r} (known: {', '.join(PIPELINES)})")
    # Bad config or data fails here, before any model loads and before OUTPUT exists.
    check_precision(cfg, pipeline)
    preflight(cfg.data)

    from kfp import local

    from kfrlhf.common.checkpoint import CHECKPOINT_KEY_PARTS_ENV, CHECKPOINT_ROOT_ENV, atomic_write_text

    output = Path(output).resolve()
    pipeline_root = output / "pipeline_root"
    pipeline_root.mkdir(parents=True, exist_ok=True)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(pipeline_root), raise_on_error=True)
    args = cfg.to_dict()
    func = PIPELINES[pipeline]()
    params = {k: v for k, v in args.items() if k in func.component_spec.inputs}  # e.g. no `ppo` for dpo
    started = time.time()
    digest = hashlib.sha256(json.dumps(args, sort_keys=True).encode()).hexdigest()[:12]
    with _env({CHECKPOINT_ROOT_ENV: str(output / "checkpoints" / digest), CHECKPOINT_KEY_PARTS_ENV: "2"}):
        report_dir = Path(func(**params).output.path)  # the pipelines return the eval report
    report = json.loads((report_dir / "report.json").read_text())
    report["pipeline"] = pipeline
    report["wall_time_s"] = round(time.time() - started, 1)
    atomic_write_text(output / "report.json", json.dumps(report, indent=2))
    for name in ("report.md", "report.html"):
        atomic_write_text(output / name, (report_dir / name).read_text())
    atomic_write_text(output / "config.yaml", _yaml(args))
    return report


def check_precision(cfg: RunConfig, pipeline: str) -> None:
    """Precision this machine cannot run: 4-bit without bitsandbytes is refused; bf16 without a bf16 GPU
    falls back to fp32 in the stages (`kfrlhf.common.trainer_args.use_bf16`), said here once."""
    from kfrlhf.common.extras import require
    from kfrlhf.common.trainer_args import bf16_supported

    if cfg.sft.load_in_4bit:
        require("bitsandbytes", "qlora", "sft.load_in_4bit (QLoRA)")
    sections = ("sft", "reward", "dpo" if pipeline == "dpo" else None)
    bf16 = [s for s in sections if s and getattr(cfg, s).bf16]
    if bf16 and not bf16_supported():
        print(f"rlhf run: {', '.join(s + '.bf16' for s in bf16)}: no GPU with bf16 support here, training in fp32")


@contextlib.contextmanager
def _env(values: dict):
    """Set environment variables for the task subprocesses, restored afterwards."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _yaml(values: dict) -> str:
    import yaml

    return yaml.safe_dump(values, sort_keys=False)
