"""Side-by-side benchmark: the project's PPO vs. TRL 1.12's `trl.experimental.ppo.PPOTrainer`.

Both run on the same policy, the same reward model, the same batch/mini-batch sizes, PPO
epochs, learning rate, fixed KL coefficient, response length and number of steps. Two setups:
`--model tiny`, a tiny random OPT policy (word-level tokenizer) and a tiny sequence classifier
trained here for a few seconds to score the fraction of the word "good"; `--model smollm2`, the
real SmolLM2-135M-Instruct on HH-RLHF prompts (benchmarks/smollm2_setup.py). TRL runs in its own
virtualenv (it pins older libraries) through benchmarks/trl_ppo.py, which reads the models from
directories written with save_pretrained.

    python -m benchmarks.ppo_vs_trl --steps 30 --trl-python .venv-trl112/bin/python
    python -m benchmarks.ppo_vs_trl --model smollm2 --preference-data HH.jsonl.gz --steps 8 \
        --batch-size 8 --response-length 48 --learning-rate 1e-4 --lora-r 16

`--variant NAME:KEY=VALUE,...` (repeatable) runs ours once per variant with those PPOConfig fields changed,
on the same setup, one after the other (`--no-trl` skips TRL): each speed change's effect on step time and
generated tokens/s, e.g. `--variant unmerged:merged_generation=false --variant merged: --no-trl`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from transformers import AutoModelForCausalLM

from kfrlhf.common.config import ConfigError
from kfrlhf.common.models import load_tokenizer
from kfrlhf.ppo.config import PPOConfig
from kfrlhf.ppo.trainer import run_ppo
from tests.word_task import PROMPTS, rm_reward_fn, tiny_lm, tiny_tokenizer, train_reward_model

from .flags import check_prompts, check_trl, count, one_line, rate
from .variants import parse_variants

TRL_SCRIPT = Path(__file__).with_name("trl_ppo.py")


def reward_gain(rewards: list[float]) -> tuple[float, float, float]:
    """(mean of the first fifth of the steps, mean of the last fifth, gain)."""
    k = max(1, len(rewards) // 5)
    first, last = sum(rewards[:k]) / k, sum(rewards[-k:]) / k
    return first, last, last - first


def tiny_setup(root: Path, seed: int) -> dict:
    """Write root/policy and root/reward: the word task's tiny OPT and its trained reward model."""
    tok = tiny_tokenizer()
    rm = train_reward_model(tok, seed)
    for name, model in (("policy", tiny_lm(tok, seed)), ("reward", rm)):
        tok.save_pretrained(root / name)
        model.save_pretrained(root / name)
    return {
        "policy": str(root / "policy"),
        "prompts": PROMPTS,
        "reward_fn": rm_reward_fn(rm, tok),
        "max_prompt_length": 16,
    }


def bench_ppo(
    steps: int = 30,
    batch_size: int = 16,
    mini_batch_size: int = 4,
    response_length: int = 8,
    ppo_epochs: int = 2,
    learning_rate: float = 3e-3,
    kl_coef: float = 0.05,
    lora_r: int = 8,
    seed: int = 0,
    trl_python: str = ".venv-trl112/bin/python",
    workdir: str | None = None,
    model: str = "tiny",
    preference_data: str = "",
    variants: dict[str, dict] | None = None,
    trl: bool = True,
) -> dict:
    """Run both trainers on the same setup; returns {"ours": {...}, "trl": {...}, "ratio": {...}}, and with
    `variants` (name -> PPOConfig fields) {"variants": {name: {...}}}, ours once per variant."""
    tmp = tempfile.TemporaryDirectory() if workdir is None else None
    root = Path(workdir or tmp.name)
    if model == "smollm2":
        from benchmarks.smollm2_setup import smollm2_setup

        setup = smollm2_setup(root, preference_data)
    else:
        setup = tiny_setup(root, seed)

    cfg = PPOConfig(
        steps=steps,
        batch_size=batch_size,
        mini_batch_size=mini_batch_size,
        ppo_epochs=ppo_epochs,
        learning_rate=learning_rate,
        init_kl_coef=kl_coef,
        adaptive_kl=False,
        normalize_reward=False,
        min_new_tokens=response_length,
        max_new_tokens=response_length,
        max_prompt_length=setup["max_prompt_length"],
        **({"stop_strings": setup["stop_strings"]} if "stop_strings" in setup else {}),
        lora_r=lora_r,
        lora_alpha=2 * lora_r,
        lora_dropout=0.0,
        save_every=0,
        seed=seed,
    )
    tok = load_tokenizer(setup["policy"], padding_side="left")
    runs = {}
    for name, fields in (variants or {"ours": {}}).items():
        policy = AutoModelForCausalLM.from_pretrained(setup["policy"]).eval()
        result = run_ppo(dataclasses.replace(cfg, **fields), policy, tok, setup["prompts"], setup["reward_fn"])
        runs[name] = variant_figures(result, batch_size * response_length)
    ours = next(iter(runs.values()))

    args = {
        "policy": setup["policy"],
        "reward": str(root / "reward"),
        "prompts": setup["prompts"],
        "steps": steps,
        "batch_size": batch_size,
        "mini_batch_size": mini_batch_size,
        "response_length": response_length,
        "ppo_epochs": ppo_epochs,
        "learning_rate": learning_rate,
        "kl_coef": kl_coef,
        "lora_r": lora_r,
        "seed": seed,
        "output_dir": str(root / "trl_out"),
    }
    out = {"setup": {k: v for k, v in args.items() if k not in ("policy", "reward", "prompts", "output_dir")}}
    out["setup"]["model"] = model
    if variants:
        out["variants"] = runs
    if not trl:
        return out
    proc = subprocess.run([trl_python, str(TRL_SCRIPT), json.dumps(args)], capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"TRL side failed ({trl_python}):\n{proc.stderr[-4000:]}")
    trl = json.loads(proc.stdout.strip().splitlines()[-1])
    if tmp is not None:
        tmp.cleanup()
    for name, res in (("ours", ours), ("trl", trl)):
        first, last, gain = reward_gain(res["rewards"])
        out[name] = {
            "samples_per_second": res["samples_per_second"],
            "reward_first": first,
            "reward_last": last,
            "reward_gain": gain,
        }
    out["ratio"] = {
        k: out["ours"][k] / out["trl"][k] if out["trl"][k] else float("nan")
        for k in ("samples_per_second", "reward_gain")
    }
    return out


def variant_figures(result: dict, tokens_per_step: int) -> dict:
    """One run of ours: samples/s, the rewards, and the medians (steps after the first) of the step time, of
    each phase, and generated tokens/s."""
    steady = result["history"][1:] or result["history"]
    median = {k: statistics.median(h[k] for h in steady) for k in steady[0] if k.startswith("time_")}
    return {
        "samples_per_second": result["samples_per_second"],
        "rewards": [h["reward"] for h in result["history"]],
        "step_s": sum(median.values()),
        **median,
        "generated_tokens_per_second": tokens_per_step / median["time_generate_s"],
    }


def format_variants(runs: dict) -> str:
    keys = ("step_s", "time_generate_s", "time_reward_s", "time_score_s", "time_update_s")
    rows = [("variant", "s/step", "generate", "reward", "log-probs+values", "update", "gen tokens/s", "samples/s")]
    for name, r in runs.items():
        row = [f"{r[k]:.2f}" for k in keys] + [
            f"{r['generated_tokens_per_second']:.1f}",
            f"{r['samples_per_second']:.3f}",
        ]
        rows.append((name, *row))
    return columns(rows)


def columns(rows: list[tuple[str, ...]]) -> str:
    """Rows of cells as left-aligned text columns."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows)


def format_table(res: dict) -> str:
    rows = [("", "ours", "TRL 1.12", "ours/TRL")]
    for key, label in (("samples_per_second", "samples/s"), ("reward_gain", "reward gain")):
        rows.append((label, f"{res['ours'][key]:.3f}", f"{res['trl'][key]:.3f}", f"{res['ratio'][key]:.2f}"))
    for key, label in (("reward_first", "reward first"), ("reward_last", "reward last")):
        rows.append((label, f"{res['ours'][key]:.3f}", f"{res['trl'][key]:.3f}", ""))
    return columns(rows)


@one_line("python -m benchmarks.ppo_vs_trl")
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.ppo_vs_trl", description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=count, default=30)
    p.add_argument("--batch-size", type=count, default=16)
    p.add_argument("--mini-batch-size", type=count, default=4)
    p.add_argument("--response-length", type=count, default=8)
    p.add_argument("--ppo-epochs", type=count, default=2)
    p.add_argument("--learning-rate", type=rate, default=3e-3)
    p.add_argument("--lora-r", type=count, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", choices=("tiny", "smollm2"), default="tiny", help="the setup (module docstring)")
    p.add_argument("--preference-data", default="", help="--model smollm2: an HH-RLHF file (prompts, reward pairs)")
    p.add_argument("--trl-python", default=".venv-trl112/bin/python", help="python of a venv with trl==1.12.0")
    p.add_argument("--json", help="also write the results to this file")
    p.add_argument("--variant", action="append", default=[], metavar="NAME:KEY=VALUE,...", help="(module docstring)")
    p.add_argument("--no-trl", dest="trl", action="store_false", help="ours only")
    a = p.parse_args(argv)
    try:
        variants = parse_variants(a.variant)
    except ConfigError as err:
        p.error(str(err))
    if a.batch_size % a.mini_batch_size:
        p.error("--batch-size must be a multiple of --mini-batch-size")
    check_prompts(p, Path(a.preference_data) if a.preference_data else None, "--preference-data")
    if a.trl:
        check_trl(p, a.trl_python)
    res = bench_ppo(
        steps=a.steps,
        batch_size=a.batch_size,
        mini_batch_size=a.mini_batch_size,
        response_length=a.response_length,
        ppo_epochs=a.ppo_epochs,
        learning_rate=a.learning_rate,
        lora_r=a.lora_r,
        seed=a.seed,
        trl_python=a.trl_python,
        model=a.model,
        preference_data=a.preference_data,
        variants=variants,
        trl=a.trl,
    )
    print(json.dumps(res["setup"]))
    if variants:
        print(format_variants(res["variants"]))
    if a.trl:
        print(format_table(res))
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
