"""The `rlhf` command line: run, compile, submit, data check, config.

rlhf run                          # the tiny preset end to end through kfp.local
rlhf run --config my.yaml --set ppo.steps=50 --output runs/x
rlhf run --pipeline dpo           # DPO in place of reward model + PPO
rlhf compile --output pipelines/compiled
rlhf data check --format preference data/pairs.jsonl
rlhf models prepare smollm2-135m-instruct   # the packaged real model, converted once into the model cache
"""

from __future__ import annotations

import argparse
import sys

from kfrlhf.common.config import ConfigError, from_dict, parse_set

SUMMARY_KEYS = (
    "sft_eval_loss",
    "reward_accuracy",
    "reward_accuracy_stderr",
    "reward_longer_wins",
    "reward_shorter_wins",
    "reward_margin_over_length",
    "reward_margin_over_length_stderr",
    "reward_before",
    "reward_after",
    "reward_gain",
    "reward_gain_stderr",
    "kl",
    "win_rate",
    "wall_time_s",
)


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--preset",
        default="tiny",
        help="built-in preset the config starts from (default %(default)s; 'none' for the tutorial-scale defaults)",
    )
    p.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="FILE",
        help="YAML with one section per stage (data, sft, reward, ppo, dpo, eval); repeatable",
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
    from kfrlhf.pipelines.run_config import load_config

    return load_config(None if args.preset == "none" else args.preset, args.config, overrides)


def cmd_run(args) -> int:
    from .local_run import run_local

    cfg = _load(args)
    report = run_local(cfg, args.output, args.pipeline)
    print_summary(report)
    print(f"\nreport: {args.output}/report.json, {args.output}/report.md")
    return 0


def print_summary(report: dict) -> None:
    rows = [(k, report[k]) for k in SUMMARY_KEYS if k in report]
    width = max(len(k) for k, _ in rows)
    print("\n" + "metric".ljust(width) + "  value\n" + "-" * (width + 12))
    for key, value in rows:
        print(f"{key.ljust(width)}  {value:.4f}" if isinstance(value, float) else f"{key.ljust(width)}  {value}")
    print("\nsamples (SFT -> tuned):")
    for s in report.get("samples", [])[:3]:
        print(
            f"  Q: {s['prompt'].strip()!r}\n    SFT   ({s['reward_sft']:+.2f}): {s['sft'].strip()!r}"
            f"\n    tuned ({s['reward_tuned']:+.2f}): {s['tuned'].strip()!r}"
        )


def cmd_config(args) -> int:
    """Print the resolved config; refuse one whose SFT texts and prompts would differ in format."""
    import yaml

    from kfrlhf.data.loaders import format_problem

    cfg = _load(args)
    problem = format_problem(cfg.data)
    if problem:
        raise ConfigError(problem)
    print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
    return 0


def cmd_data_check(args) -> int:
    from kfrlhf.data.config import DataConfig
    from kfrlhf.data.loaders import check

    cfg = from_dict(DataConfig, parse_set(args.overrides).get("data", {}), "data")
    problems = check(args.path, args.format, cfg)
    for problem in problems:
        print(problem)
    print(f"{args.path}: {len(problems)} problem(s)" if problems else f"{args.path}: ok")
    return 1 if problems else 0


def cmd_models_prepare(args) -> int:
    from kfrlhf.common.packaged_models import SMOLLM2, prepare_smollm2, resolve

    path = prepare_smollm2(args.output) if args.name == SMOLLM2 else resolve(args.name)
    print(path)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from kfrlhf.pipelines.cli_cluster import add_compile_parser, add_submit_parser

    parser = argparse.ArgumentParser(prog="rlhf", description=__doc__.split("\n\n")[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run the RLHF (or DPO) pipeline locally through kfp.local")
    _config_args(p)
    p.add_argument(
        "--pipeline",
        default="rlhf",
        help="rlhf (SFT, reward, PPO; default) or dpo (SFT, DPO; the reward model only scores the eval)",
    )
    p.add_argument("--output", default="runs/latest", help="directory for report.json and artifacts")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("config", help="print the resolved config (defaults < preset < files < --set)")
    _config_args(p)
    p.set_defaults(func=cmd_config)

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

    p = sub.add_parser("models", help="packaged pretrained models")
    models_sub = p.add_subparsers(dest="models_command", required=True)
    p = models_sub.add_parser("prepare", help="make a packaged model a local directory (the GGUF converted once)")
    p.add_argument("name", choices=["smollm2-135m-instruct", "all-minilm-l6-v2"])
    p.add_argument("--output", help="directory for the converted model (default: the model cache)")
    p.set_defaults(func=cmd_models_prepare)

    add_compile_parser(sub)
    add_submit_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError, RuntimeError) as err:  # ConfigError and DataError are ValueErrors
        if args.debug:
            raise
        message = " ".join(str(err).split()) or type(err).__name__
        print(f"rlhf {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
