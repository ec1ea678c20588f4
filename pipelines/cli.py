"""The `rlhf` command line: one command for every stage, pipeline and tool (`rlhf --help` lists them).

rlhf run                          # the tiny preset end to end through kfp.local
rlhf run --config my.yaml --set ppo.steps=50 --output runs/x
rlhf run --pipeline dpo           # DPO in place of reward model + PPO (rlhf run --help: every pipeline)
rlhf run --pipeline rlaif         # an AI judge labels the SFT model's answer pairs for the reward model
rlhf compare runs/rlhf runs/dpo   # one table across finished runs (also runs/compare/compare.md, .html)
rlhf compile --output pipelines/compiled
rlhf render-trainjob --stage ppo --nodes 2 --gpus-per-node 8   # the TrainJob a multi-node stage creates
rlhf cluster check                # Kubeflow Trainer, JobSet, the runtime, Argo's retry policy: there?
rlhf images --registry registry.example.com/ml --push   # build every stage image from images/Dockerfile
rlhf data check --format preference data/pairs.jsonl
rlhf stage ppo --input sft_model=DIR --input reward_model=DIR --input prompt_data=DIR --output runs/ppo2
rlhf plan --preset none --config pipelines/configs/opt-1.3b_rlhf.yaml --gpu a100-40   # GPU memory per stage
rlhf models prepare smollm2-135m-instruct   # the packaged real model, converted once into the model cache
"""

from __future__ import annotations

import argparse
import logging
import sys

from kfrlhf.common.config import ConfigError, from_dict, parse_set
from kfrlhf.common.k8s_syntax import DNS1123_LABEL, DNS1123_SUBDOMAIN, check

# bitsandbytes warns when imported (through transformers and peft) on a CPU with AVX512-BF16 that its
# optional `kernels` package is missing; the CLI's stderr is for the user's own errors.
logging.getLogger("bitsandbytes").setLevel(logging.ERROR)

# `rlhf run`'s exit status when the pipeline ran and its eval gate refused the model (nothing promoted): neither 0
# (promoted) nor an error's 2, so that a CI job can tell them apart (docs/usage.md, "Exit status").
GATE_REFUSED = 3

SUMMARY_KEYS = (
    "sft_eval_loss",
    "reward_accuracy",
    "reward_accuracy_stderr",
    "reward_longer_wins",
    "reward_shorter_wins",
    "reward_margin_over_length",
    "reward_margin_over_length_stderr",
    "rlaif_agreement_rate",
    "rlaif_kept_pairs",
    "rlaif_dropped_pairs",
    "reward_before",
    "reward_after",
    "reward_gain",
    "reward_gain_stderr",
    "length_controlled_gain",
    "reward_length_correlation_eval",
    "kl",
    "win_rate",
    "win_rate_second_judge",
    "wall_time_s",
)


# The numeric options of every subcommand that has them: (flag, lowest, highest), checked before any work.
RANGES = {
    "batch_size": ("--batch-size", 1, 4096),
    "seed": ("--seed", 0, 2**32 - 1),
    "nodes": ("--nodes", 1, 1024),
    "gpus_per_node": ("--gpus-per-node", 0, 64),
    "timeout": ("--timeout", 1, 366 * 24 * 3600),
}
# Kubernetes names: a namespace is a DNS-1123 label, a service account a DNS-1123 subdomain.
K8S_NAMES = {"namespace": ("--namespace", DNS1123_LABEL), "service_account": ("--service-account", DNS1123_SUBDOMAIN)}


def check_arguments(args) -> None:
    for attr, (flag, low, high) in RANGES.items():
        value = getattr(args, attr, None)
        if isinstance(value, (int, float)) and not low <= value <= high:  # NaN fails too
            raise ValueError(f"{flag} must be from {low:,} to {high:,}, got {value}")
    for attr, (flag, rule) in K8S_NAMES.items():
        value = getattr(args, attr, None)
        if value is not None:
            check(value, rule, flag)
    check_environment()


def check_environment() -> None:
    """The environment variables every command reads, checked as its flags are: a TMPDIR that is not a
    writable folder fails deep inside a stage (`the task exited with status 1`) otherwise."""
    import os

    tmp = os.environ.get("TMPDIR")
    if tmp and not (os.path.isdir(tmp) and os.access(tmp, os.W_OK | os.X_OK)):
        problem = "is not a writable folder" if os.path.isdir(tmp) else "does not exist"
        raise ValueError(f"TMPDIR {tmp} {problem}: create it, or unset TMPDIR to use /tmp")


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--preset",
        default="tiny",
        help="built-in preset the config starts from (default %(default)s; 'none': the tutorial-scale defaults, "
        "a base for --config pipelines/configs/opt-1.3b_rlhf.yaml, which gives their data one prompt format)",
    )
    p.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="FILE",
        help="YAML with one section per stage (rlhf config prints them all); repeatable",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        dest="overrides",
        help="override one value, e.g. --set ppo.steps=10",
    )
    p.add_argument("--report-to", choices=["none", "wandb", "tensorboard"], help="experiment tracking")


def _load(args):
    overrides = list(args.overrides) + ([f"report_to={args.report_to}"] if args.report_to else [])
    from kfrlhf.pipelines.definitions.run_config import load_config

    if not args.preset.strip():  # load_config reads "" as no preset: the tutorial-scale defaults, unasked
        raise ConfigError("--preset must name a preset (tiny, small) or none, got an empty string")
    return load_config(None if args.preset == "none" else args.preset, args.config, overrides)


def cmd_run(args) -> int:
    import os

    from kfrlhf.common.tracking import check_wandb_key

    from .local.run import run_local

    cfg = _load(args)
    # W&B goes online only when asked on the command line (and not WANDB_MODE=offline), with a key it accepts.
    asked = args.report_to == "wandb" and os.environ.get("WANDB_MODE", "online") == "online"
    online = asked and check_wandb_key(os.environ.get("WANDB_API_KEY"))
    image_of = None
    if args.runner == "container":
        from kfrlhf.pipelines.cluster.images import default_tag, image_for

        def image_of(stage: str) -> str:
            return image_for(stage, args.registry, args.tag or default_tag("cpu"))

    report = run_local(cfg, args.output, args.pipeline, verbose=args.verbose, online=online, image_of=image_of)
    print_summary(report)
    print(f"\nreport: {args.output}/report.html (also report.md, report.json)")
    return 0 if report["gate"]["passed"] else GATE_REFUSED


def print_summary(report: dict) -> None:
    from kfrlhf.eval.report import gate_line

    rows = [(k, report[k]) for k in SUMMARY_KEYS if k in report]
    width = max(len(k) for k, _ in rows)
    print("\n" + "metric".ljust(width) + "  value\n" + "-" * (width + 12))
    for key, value in rows:
        print(f"{key.ljust(width)}  {value:.4f}" if isinstance(value, float) else f"{key.ljust(width)}  {value}")
    if gate_line(report):
        print("\n" + gate_line(report))
    print("\nsamples (SFT -> tuned):")
    for s in report.get("samples", [])[:3]:
        print(
            f"  Q: {s['prompt'].strip()!r}\n    SFT   ({s['reward_sft']:+.2f}): {s['sft'].strip()!r}"
            f"\n    tuned ({s['reward_tuned']:+.2f}): {s['tuned'].strip()!r}"
        )


def cmd_compare(args) -> int:
    from .local.compare import compare

    print(compare(args.runs, args.output), end="")
    print(f"\nwritten: {args.output}/compare.md, {args.output}/compare.html")
    return 0


def cmd_config(args) -> int:
    """Print the resolved config; refuse one whose SFT texts and prompts would differ in format."""
    import yaml

    from kfrlhf.data.loaders import format_problem

    cfg = _load(args)
    problem = format_problem(cfg.data)
    if problem:
        raise ConfigError(problem)
    if args.explain or args.docs:
        from .definitions import config_docs

        if args.explain:
            print(config_docs.explain(args.explain, cfg, None if args.preset == "none" else args.preset))
        if args.docs:
            from pathlib import Path

            page = Path(args.docs)
            page.write_text(config_docs.render(page.read_text()))
            print(f"rlhf config: wrote the generated part of {page}")
        return 0
    print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
    return 0


def cmd_stage(args) -> int:
    """One stage's entry on existing artifacts, with the config resolved as `rlhf run` resolves it."""
    import json

    from .local.one_stage import run_one

    inputs = dict(_pair(item, "--input") for item in args.inputs)
    metrics = run_one(_load(args), args.name, inputs, args.output, args.step)
    if isinstance(metrics, dict):
        print(json.dumps({k: v for k, v in metrics.items() if isinstance(v, int | float)}, indent=2))
    return 0


def _pair(item: str, flag: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key or not value:
        raise ConfigError(f"{flag} {item!r}: expected NAME=DIR")
    return key, value


def cmd_plan(args) -> int:
    """Each GPU stage's peak memory for the resolved config and its models, against a GPU."""
    import json

    from .local import plan

    cfg = _load(args)
    gpu_gib, gpu = plan.gpu_memory(args.gpu, args.gpu_memory)
    models = plan.models_for(cfg, policy=args.policy, reward=args.reward, judge=args.judge)
    rows = plan.plan(cfg, models, gpu_gib)
    shapes = {role: shape for role, shape in vars(models).items() if shape is not None}
    if args.json:
        named = {role: {"name": s.name, "params": s.params} for role, s in shapes.items()}
        print(json.dumps({"gpu": gpu, "gpu_gib": gpu_gib, "models": named, "stages": rows}, indent=2))
        return 0
    names = ", ".join(f"{role} {s.name} ({s.params / 1e9:.3g} B params)" for role, s in shapes.items())
    print(f"rlhf plan: {gpu_gib:g} GiB GPU ({gpu}); {names}\n")
    print(plan.table(rows))
    return 0


def cmd_data_check(args) -> int:
    from kfrlhf.data.config import DataConfig
    from kfrlhf.data.loaders import check

    values = parse_set(args.overrides)
    if set(values) - {"data"}:
        raise ValueError(f"data check: --set takes data.* keys only, got {sorted(set(values) - {'data'})[0]}")
    cfg = from_dict(DataConfig, values.get("data", {}), "data")
    problems = check(args.path, args.format, cfg)
    for problem in problems:
        print(problem)
    print(f"{args.path}: {len(problems)} problem(s)" if problems else f"{args.path}: ok")
    return 1 if problems else 0


def cmd_generate(args) -> int:
    import json

    from kfrlhf.data.config import DataConfig, check_template
    from kfrlhf.data.stage import model_prompt
    from kfrlhf.pipelines.local import generate as gen

    if args.template is not None:
        check_template(args.template, "--template")
    source = gen.resolve(args.model)
    template = args.template or source.template or DataConfig().template
    if args.prompt is not None and not args.prompt.strip():
        raise ValueError("--prompt is empty: give the question to answer")
    raw = [args.prompt] if args.prompt is not None else gen.read_prompts(args.prompts)
    prompts = [model_prompt(p, template) for p in raw]
    options = parse_set(args.generation)
    if args.compare:
        rows = gen.compare(source, prompts, options, args.seed, args.batch_size)
        for row, question in zip(rows, raw):
            row["prompt"] = question
            print(json.dumps(row) if args.prompts else gen.side_by_side(row))
    elif args.prompts:
        for question, answer in zip(raw, gen.answer(source, prompts, options, args.seed, args.batch_size, False)):
            print(json.dumps({"prompt": question, "answer": answer}))
    else:
        gen.answer(source, prompts, options, args.seed, 1, stream=True)
    return 0


def cmd_models_prepare(args) -> int:
    from kfrlhf.common.packaged_models import prepare, resolve

    print(prepare(args.name, args.output) if args.output is not None else resolve(args.name))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from kfrlhf.pipelines.cluster.check import add_cluster_parser
    from kfrlhf.pipelines.cluster.cli import (
        add_compile_parser,
        add_image_options,
        add_images_parser,
        add_render_trainjob_parser,
        add_submit_parser,
    )
    from kfrlhf.pipelines.cluster.images import default_tag
    from kfrlhf.pipelines.definitions import registry
    from kfrlhf.pipelines.definitions.stages import STAGES as STAGE_NAMES
    from kfrlhf.pipelines.local.plan import ROLES as PLAN_ROLES

    parser = argparse.ArgumentParser(prog="rlhf", description=__doc__.split("\n\n")[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)

    pipelines = registry.summaries()
    p = sub.add_parser("run", help=f"run a pipeline ({', '.join(pipelines)}) locally through kfp.local")
    _config_args(p)
    p.add_argument(
        "--pipeline",
        default=registry.DEFAULT,
        help="; ".join(f"{name}: {text.split(': ', 1)[-1].rstrip('.')}" for name, text in pipelines.items())
        + " (default %(default)s)",
    )

    p.add_argument("--output", default="runs/latest", help="directory for report.json and artifacts")
    p.add_argument("--verbose", action="store_true", help="stream every task's output (always in OUTPUT/logs/)")
    p.add_argument(
        "--runner",
        choices=["subprocess", "container"],
        default="subprocess",
        help="subprocess: every task in this Python (default); container: every task in its stage's image "
        "(rlhf images --flavour cpu builds them; podman or docker runs them)",
    )
    add_image_options(p, tag_help=f"default {default_tag('cpu')}: the cpu images; --runner container only")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("compare", help="one table (and compare.md/.html with a plot) across finished runs")
    p.add_argument("runs", nargs="+", metavar="DIR", help="run directories of rlhf run --output DIR")
    p.add_argument(
        "--output", default="runs/compare", help="directory for compare.md and compare.html (default %(default)s)"
    )
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("config", help="print the resolved config (defaults < preset < files < --set)")
    _config_args(p)
    p.add_argument(
        "--explain", metavar="SECTION[.FIELD]", help="each field's help, default, value here and what it may be"
    )
    p.add_argument("--docs", metavar="FILE", help="regenerate the generated part of FILE (docs/configuration.md)")
    p.set_defaults(func=cmd_config)

    p = sub.add_parser("stage", help="run one stage's entry on existing artifacts (an earlier run's, say)")
    _config_args(p)
    p.add_argument("name", metavar="NAME", help="the stage (" + ", ".join(STAGE_NAMES) + ")")
    p.add_argument(
        "--input", action="append", default=[], dest="inputs", metavar="NAME=DIR", help="one of its inputs; repeatable"
    )
    p.add_argument("--output", required=True, help="its output directory (output_dir)")
    p.add_argument("--step", help="the step of a stage that runs as several (rest: grow, improve)")
    p.set_defaults(func=cmd_stage)

    p = sub.add_parser(
        "plan", help="each GPU stage's peak memory for the config and its models, whether it fits, what to turn on"
    )
    _config_args(p)
    gpu = p.add_mutually_exclusive_group()
    gpu.add_argument("--gpu", help="a GPU by name: t4, l4, a10, a100-40, l40s, a100-80, h100, h200, b200")
    gpu.add_argument("--gpu-memory", type=float, metavar="GIB", help="the GPU's memory in GiB (default 80)")
    for role, setting in PLAN_ROLES.items():
        p.add_argument(
            f"--{role}",
            metavar="MODEL",
            help=f"the model whose shape to plan for (default: {setting}): a local folder with config.json, a "
            "tiny or packaged name, smollm2-135m/-360m/-1.7b, or a hub id cached on this machine",
        )
    p.add_argument("--json", action="store_true", help="JSON: every stage's estimate, its terms and the advice")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("data", help="dataset tools")
    data_sub = p.add_subparsers(dest="data_command", required=True)
    p = data_sub.add_parser("check", help="validate a dataset and list every problem with its row")
    p.add_argument("--format", required=True, choices=["sft", "preference", "prompts"])
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="data.KEY=VALUE",
        dest="overrides",
        help="column mapping, e.g. --set data.question_column=instruction",
    )
    p.add_argument("path", help="JSONL file, HF dataset directory or hub id, deeplake path or URI")
    p.set_defaults(func=cmd_data_check)

    p = sub.add_parser(
        "generate",
        help="answer prompts with a merged model or a run's tuned model (--compare: SFT vs tuned, with rewards)",
    )
    p.add_argument("--model", required=True, help="a run directory (rlhf run --output DIR) or a merged model directory")
    prompt = p.add_mutually_exclusive_group(required=True)
    prompt.add_argument("--prompt", help="one prompt: the answer streams to the terminal")
    prompt.add_argument("--prompts", metavar="FILE", help="JSONL (prompt or question per row) or text lines: JSONL out")
    p.add_argument("--compare", action="store_true", help="SFT vs tuned answers, with rewards (run dir)")
    p.add_argument("--template", help="prompt template (default: the run's data.template, else the default one)")
    p.add_argument("--seed", type=int, default=1234, help="sampling seed, same for both models (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=8, help="prompts per generate call (default %(default)s)")
    p.add_argument(
        "generation",
        nargs="*",
        metavar="FIELD=VALUE",
        help="transformers.GenerationConfig fields, e.g. max_new_tokens=128 num_beams=4 do_sample=true top_k=10",
    )
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("models", help="packaged pretrained models")
    models_sub = p.add_subparsers(dest="models_command", required=True)
    p = models_sub.add_parser("prepare", help="make a packaged model a local directory (the GGUF converted once)")
    p.add_argument("name", choices=["smollm2-135m-instruct", "all-minilm-l6-v2"])
    p.add_argument("--output", help="directory for the converted model (default: the model cache)")
    p.set_defaults(func=cmd_models_prepare)

    add_compile_parser(sub)
    add_render_trainjob_parser(sub)
    add_cluster_parser(sub)
    add_images_parser(sub)
    add_submit_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        from kfrlhf.pipelines.local.console import Stopped
    except KeyboardInterrupt:
        print("rlhf: stopped by Ctrl-C", file=sys.stderr)
        return 130
    command = " ".join(["rlhf", *(argv if argv is not None else sys.argv[1:])])
    try:
        check_arguments(args)
        return args.func(args)
    except Stopped as stop:
        print(f"rlhf {args.command}: stopped {stop}; to resume, run the same command again: {command}", file=sys.stderr)
        return stop.exit_code
    except KeyboardInterrupt:  # outside the pipeline call (pre-flight, building the pipeline, the report)
        print(f"rlhf {args.command}: stopped by Ctrl-C; run the same command again: {command}", file=sys.stderr)
        return 130
    except Exception as err:  # ConfigError and DataError are ValueErrors; anything else is one line too
        if args.debug:
            raise
        message = " ".join(str(err).split()) or type(err).__name__
        if not isinstance(err, (ValueError, OSError, RuntimeError)):
            message = f"{type(err).__name__}: {message} (rlhf --debug shows the traceback)"
        print(f"rlhf {args.command}: error: {message[:2000]}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
