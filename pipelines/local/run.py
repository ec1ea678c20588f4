"""`rlhf run`: a real KFP pipeline (RLHF by default; DPO, ReST, RLAIF, GRPO) on this machine through `kfp.local`.

Each task runs as a subprocess of this Python (`use_venv=False`: the project is installed
here, as it is in the stage images), passing artifacts through `OUTPUT/pipeline_root`; its output goes
to `OUTPUT/logs/<task>.log` (`kfrlhf.pipelines.local.console`). One run at a time holds `OUTPUT/.lock`.
An existing OUTPUT must be empty or an earlier `rlhf run`'s (`kfrlhf.common.outputs`).
When the pipeline is done, the gated eval report is copied to `OUTPUT/report.json` (its `models`
relative to OUTPUT: what `rlhf generate` reads) and rendered, with the run's details (config, stage
times), as `report.md` / `report.html`; when the gate passed, the promotion's
`inference_service.yaml` lands in OUTPUT too.
Training stages checkpoint under `OUTPUT/checkpoints/<config hash>/<task>/<output>` (dropped when
the stage succeeds): `rlhf run` again with the same config and output resumes the stage that died.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import time
from pathlib import Path

from kfrlhf.common.config import ConfigError
from kfrlhf.common.outputs import check_output_dir, disk_full, mark
from kfrlhf.data.loaders import preflight
from kfrlhf.eval.report import html_report, markdown_report
from kfrlhf.gate.stage import markdown as gate_markdown
from kfrlhf.pipelines.definitions.run_config import SECTIONS, RunConfig
from kfrlhf.pipelines.local.console import Console
from kfrlhf.pipelines.local.containers import check_images, container_runner, find_engine, write_record
from kfrlhf.rlaif.constitution import load_constitution
from kfrlhf.rlaif.judge import check_context

# What a full disk looks like from inside a stage (torch.save says only "iostream error").
DISK_FULL = ("No space left on device", "[Errno 28]", "iostream error", "PytorchStreamWriter failed")


class StageFailed(RuntimeError):
    """A task of the pipeline failed; the message names it, its error and its log."""


def run_local(
    cfg: RunConfig,
    output: str | Path,
    pipeline: str = "rlhf",
    verbose: bool = False,
    online: bool = False,
    image_of=None,
) -> dict:
    """Run the pipeline `pipeline` (a name in `registry.PIPELINES`) with the config's sections as parameters.

    `online`: W&B logs online (the caller checked the key); otherwise every task runs with WANDB_MODE=offline.
    `image_of(stage)`: every task in its stage's image (`--runner container`, `kfrlhf.pipelines.local.containers`),
    which containers ran in `OUTPUT/containers.json`; else every task in this Python.
    """
    from kfrlhf.pipelines.definitions.registry import PIPELINES

    if pipeline not in PIPELINES:
        raise ConfigError(f"unknown pipeline {pipeline!r} (known: {', '.join(PIPELINES)})")
    # Bad config, data or --output fails here, before any model loads and before OUTPUT is written to.
    output = check_output_dir(output, "run").resolve()
    configure = _set_images(image_of) if image_of else None
    func = PIPELINES[pipeline](configure=configure, config=cfg)  # ReST unrolls the run's rest.iterations
    check_precision(cfg, func.component_spec.inputs)
    preflight(cfg.data)
    check_models(cfg, pipeline)  # before the RLAIF check reads the judge's tokenizer
    if pipeline == "rlaif":
        check_context(cfg.rlaif, load_constitution(cfg.rlaif.constitution))
    check_model_limits(cfg)
    engine = find_engine() if image_of else None
    if image_of:
        check_images(engine, configure.images)

    from kfp import local

    from kfrlhf.common.checkpoint import CHECKPOINT_KEY_PARTS_ENV, CHECKPOINT_ROOT_ENV, atomic_write_text, resume_key

    pipeline_root = output / "pipeline_root"
    pipeline_root.mkdir(parents=True, exist_ok=True)
    mark(output, "run")
    console = Console(output / "logs", len(func.pipeline_spec.root.dag.tasks), verbose)
    with _lock(output), disk_full(output, "free space and run the same command again to resume"):
        console.say(f"rlhf run: {pipeline} pipeline, {console.total} stages; logs in {output / 'logs'}")
        local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(pipeline_root), raise_on_error=True)
        args = cfg.to_dict()
        params = {k: v for k, v in args.items() if k in func.component_spec.inputs}  # e.g. no `ppo` for dpo
        started = time.time()
        digest = resume_key(args)  # a changed step count resumes (docs/reliability.md)
        env = {
            CHECKPOINT_ROOT_ENV: str(output / "checkpoints" / digest),
            CHECKPOINT_KEY_PARTS_ENV: "2",
            **({} if online else {"WANDB_MODE": "offline"}),
        }
        containers = None
        if image_of:
            writable = [pipeline_root, output / "checkpoints"]
            writable[1].mkdir(exist_ok=True)
            containers = console.containers = container_runner(engine, writable, args, env)
        try:
            with _env(env), console.capture():
                report_dir = Path(func(**params).output.path)  # the pipelines return the gated eval report
        except RuntimeError as err:
            if console.failure is None:
                raise
            raise StageFailed(_failure_message(console, output)) from err
        finally:
            if containers:
                write_record(containers, output)
        report = json.loads((report_dir / "report.json").read_text())
        report["pipeline"] = pipeline
        report["win_rate_judge"] = judge(func)
        report["models"] = {k: os.path.relpath(v, output) for k, v in report["models"].items()}
        # kfp.local keeps each task's outputs in <run>/<task>/<output>: the promote task beside the gate.
        promotion = report_dir.parent.parent / "promote" / "promotion"
        manifest = output / "inference_service.yaml"
        manifest.unlink(missing_ok=True)
        if report["gate"]["passed"]:
            report["promotion"] = json.loads((promotion / "promotion.json").read_text())
            atomic_write_text(manifest, (promotion / "inference_service.yaml").read_text())
        report["wall_time_s"] = round(time.time() - started, 1)
        report["stage_times_s"] = console.times
        atomic_write_text(output / "report.json", json.dumps(report, indent=2))
        run = {"output": str(output), "config": args, "stage_times_s": console.times}
        gate = gate_markdown(report["gate"]) + "\n"  # the gate stage's section, as in the gated report.md
        atomic_write_text(output / "report.md", gate + markdown_report(report, cfg.eval.num_samples, run))
        atomic_write_text(output / "report.html", html_report(report, cfg.eval.num_samples, run))
        atomic_write_text(output / "config.yaml", _yaml(args))
    return report


def _set_images(image_of):
    """The pipeline's `configure` hook of a container run: each task's image, nothing else of the cluster's."""

    def configure(task, stage):
        configure.images.append(image_of(stage))
        task.set_container_image(configure.images[-1])

    configure.images = []
    return configure


def judge(func) -> str:
    """Who judged the win rate, for the pipeline `func` tunes its policy in: the run's reward model, which its
    tuning method optimised (it takes the reward model as input) or never saw (it learns from the pairs)."""
    from kfrlhf.pipelines.definitions.stages import METHODS

    tasks = func.pipeline_spec.root.dag.tasks
    tuners = {m: [t for t in tasks if t == m or t.startswith(m.replace("_", "-") + "-")] for m in METHODS if m != "sft"}
    method, names = next((m, names) for m, names in tuners.items() if names)
    if any("reward_model" in tasks[t].inputs.artifacts for t in names):
        return f"this run's reward model, which {METHODS[method]} optimised"
    return f"this run's reward model, trained on the pairs {METHODS[method]} learned from without it"


def check_models(cfg: RunConfig, pipeline: str) -> None:
    """Every model setting that names a local directory names a loadable one (hub ids are left to their stage)."""
    from kfrlhf.common.models import check_model_dir

    settings = {"sft.model_name": cfg.sft.model_name, "reward.model_name": cfg.reward.model_name}
    if pipeline == "rlaif":
        settings["rlaif.judge_model"] = cfg.rlaif.judge_model
    if cfg.eval.second_judge:
        settings["eval.second_judge"] = cfg.eval.second_judge
    for setting, name in settings.items():
        if Path(name).is_dir():
            check_model_dir(name, setting)
        elif name.startswith(("/", "./", "../", "~")):
            raise ConfigError(f"{setting}: {name}: no such directory (a saved model directory or a hub id)")
    causal = _causal_lm(cfg.eval.second_judge) if cfg.eval.second_judge else None
    if causal:  # found here, not by the eval after the training stages
        raise ConfigError(
            f"eval.second_judge {cfg.eval.second_judge!r} ({causal}) is a causal LM: give a sequence classifier "
            "that scores answers (a reward model's directory or hub id)"
        )


def _causal_lm(name: str) -> str | None:
    """The causal-LM architecture of a tiny name or a local model directory, else None (hub ids: their stage)."""
    from kfrlhf.common.models import TINY_CAUSAL, is_tiny

    if is_tiny(name):
        return "OPTForCausalLM" if name == TINY_CAUSAL else None
    try:
        config = json.loads((Path(name) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    found = config.get("architectures") if isinstance(config, dict) else None
    return next((a for a in found or [] if str(a).endswith(("ForCausalLM", "LMHeadModel"))), None)


def model_lengths(cfg: RunConfig) -> dict[str, list[tuple[str, int]]]:
    """The token lengths each model reads, by role, from every section: `seq_length`, `max_length`, or
    `max_prompt_length + max_new_tokens`; read by the section's own `model_name` (the SFT and reward models),
    else by the policy (every stage after SFT samples or trains the SFT model)."""
    lengths: dict[str, list[tuple[str, int]]] = {"sft": [], "reward": []}
    for section in SECTIONS:
        part = getattr(cfg, section)
        role = section if section in lengths and hasattr(part, "model_name") else "sft"
        for fields in (("seq_length",), ("max_length",), ("max_prompt_length", "max_new_tokens")):
            if all(hasattr(part, f) for f in fields):
                key = " + ".join(f"{section}.{f}" for f in fields)
                lengths[role].append((key, sum(getattr(part, f) for f in fields)))
    return lengths


def check_model_limits(cfg: RunConfig) -> None:
    """Lengths within the models' positions and LoRA targets that exist, for models readable here."""
    from kfrlhf.common.models import model_limits

    lengths = model_lengths(cfg)
    for role, name in (("sft", cfg.sft.model_name), ("reward", cfg.reward.model_name)):
        limits = model_limits(name)
        if limits is None:  # a hub id not in the local cache: its stage checks it
            continue
        positions, modules = limits
        for key, value in lengths[role]:
            if value > positions:
                raise ConfigError(f"{key} ({value}) exceeds the {positions} positions of {role} model {name}")
        missing = [t for t in cfg.sft.lora_target_modules if t not in modules] if role == "sft" else []
        if missing:
            raise ConfigError(
                f"sft.lora_target_modules: {', '.join(missing)} not in {name} "
                f"(its layers: {', '.join(sorted(modules))})"
            )


def _failure_message(console: Console, output: Path) -> str:
    task, error = console.failure
    log = console.log_dir / f"{task}.log"
    if any(marker in error for marker in DISK_FULL):
        free = shutil.disk_usage(output).free / 2**20
        error = f"the disk is full ({free:,.0f} MiB free under {output}): {error}"
    return f"stage {console.label(task)} failed: {error} (log: {log})"


@contextlib.contextmanager
def _lock(output: Path):
    """One `rlhf run` per output directory."""
    with open(output / ".lock", "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            raise ConfigError(
                f"{output} is in use by another rlhf run (pid {f.read().strip() or '?'}); "
                "wait for it or choose another --output"
            ) from None
        f.truncate(0)
        f.write(str(os.getpid()))
        f.flush()
        yield


def check_precision(cfg: RunConfig, sections) -> None:
    """Precision this machine cannot run: 4-bit without bitsandbytes is refused; bf16 without a bf16 GPU
    falls back to fp32 in the stages (`kfrlhf.common.trainer_args.use_bf16`), said here once for each of the
    pipeline's `sections` that asks for bf16 where its default does not (a default of bf16 means "where the
    GPU has it": PPO's)."""
    from kfrlhf.common.extras import require
    from kfrlhf.common.trainer_args import bf16_supported

    if cfg.sft.load_in_4bit:
        require("bitsandbytes", "qlora", "sft.load_in_4bit (QLoRA)")
    bf16 = [s for s in SECTIONS if s in sections and getattr(getattr(cfg, s), "bf16", False) and not SECTIONS[s]().bf16]
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
