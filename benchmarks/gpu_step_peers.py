"""The peers beside our PPO in benchmarks/gpu_step.py: TRL 1.12's PPOTrainer (in its own venv or path, through
benchmarks/trl_ppo.py) and TRL's GRPOTrainer as the GRPO stage builds it."""

from __future__ import annotations

import json
import os
import subprocess  # nosec B404: the TRL side runs in its own venv, a child process of fixed argv
import time
from pathlib import Path

import torch

from .measures import steady

TRL_SCRIPT = Path(__file__).with_name("trl_ppo.py")

# Runs in TRL's venv: benchmarks/trl_ppo.py as it is, with the device, dtype and per-step timings put around it.
TRL_WRAPPER = r"""
import importlib.util, json, sys, time
import torch
a = json.loads(open(sys.argv[1]).read())  # a file: the prompts outgrow a command line
spec = importlib.util.spec_from_file_location("trl_ppo", a.pop("script"))
m = importlib.util.module_from_spec(spec)
spec.loader.exec_module(m)
dtype = getattr(torch, a.pop("dtype"))
cuda = a.pop("device") == "cuda"
marks = []
Config = m.PPOConfig
m.PPOConfig = lambda **kw: Config(**{**kw, "use_cpu": not cuda})
def loader(cls):
    class Load:
        @staticmethod
        def from_pretrained(path, **kw):
            return cls.from_pretrained(path, dtype=dtype, **kw)
    return Load
m.AutoModelForCausalLM = loader(m.AutoModelForCausalLM)
m.AutoModelForSequenceClassification = loader(m.AutoModelForSequenceClassification)
class Timed(m.Scores):
    def on_train_begin(self, args, state, control, **kw):
        marks[:] = [time.perf_counter()]
    def on_log(self, args, state, control, logs=None, **kw):
        super().on_log(args, state, control, logs=logs, **kw)
        if logs and "objective/scores" in logs:
            if cuda:
                torch.cuda.synchronize()
            marks.append(time.perf_counter())
m.Scores = Timed
if cuda:
    torch.cuda.reset_peak_memory_stats()
out = m.main(a)
out["step_seconds"] = [b - e for b, e in zip(marks[1:], marks[:-1])]
out["peak_gpu_gib"] = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
out["versions"] = {k: __import__(k).__version__ for k in ("trl", "transformers", "torch", "peft")}
print(json.dumps(out))
"""


def run_trl(a, root: Path, prompts: list[str], device: str) -> dict:
    args = {
        "script": str(TRL_SCRIPT),
        "device": device,
        "dtype": {"fp32": "float32", "bf16": "bfloat16"}[a.dtype],
        "policy": str(root / "policy"),
        "reward": str(root / "reward"),
        "prompts": prompts,
        "steps": a.steps,
        "batch_size": a.batch_size,
        "mini_batch_size": a.mini_batch_size,
        "response_length": a.response_length,
        "ppo_epochs": a.ppo_epochs,
        "learning_rate": a.learning_rate,
        "kl_coef": a.kl_coef,
        "lora_r": a.lora_r,
        "seed": a.seed,
        "output_dir": str(root / "trl_out"),
    }
    (root / "trl_args.json").write_text(json.dumps(args))
    argv = [a.trl_python, "-c", TRL_WRAPPER, str(root / "trl_args.json")]  # the TRL venv's python, our code
    env = dict(os.environ)
    if a.trl_path:  # TRL 1.12 installed with `pip install --target`, first on the path of that process only
        env["PYTHONPATH"] = os.pathsep.join(filter(None, (a.trl_path, env.get("PYTHONPATH"))))
    proc = subprocess.run(argv, capture_output=True, text=True, env=env)  # nosec B603: fixed argv, no shell
    if proc.returncode:
        raise RuntimeError(f"TRL side failed ({a.trl_python}):\n{proc.stderr[-4000:]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    step_s = res["step_seconds"]
    k = max(1, len(res["rewards"]) // 10)
    return {
        "samples_per_second": res["samples_per_second"],
        "samples_per_second_steady": a.batch_size / steady(step_s) if steady(step_s) else None,
        "step_seconds": step_s,
        "step_seconds_steady": steady(step_s),
        "generated_tokens_per_second_step": a.batch_size * a.response_length / steady(step_s)
        if steady(step_s)
        else None,
        "peak_gpu_gib": res["peak_gpu_gib"],
        "reward_first": sum(res["rewards"][:k]) / k if res["rewards"] else None,
        "reward_last": sum(res["rewards"][-k:]) / k if res["rewards"] else None,
        "versions": res["versions"],
    }


def run_grpo(a, root: Path, prompts: list[str], device: str) -> dict:
    """TRL's GRPOTrainer as the GRPO stage builds it: groups of 8, the same batch, response length and reward."""
    from transformers import TrainerCallback

    from kfrlhf.common.models import RewardScorer
    from kfrlhf.grpo.config import GRPOConfig
    from kfrlhf.grpo.stage import grpo_trainer, reward_function

    marks: list[float] = []

    class Clock(TrainerCallback):
        def on_train_begin(self, *args, **kw):
            marks[:] = [time.perf_counter()]

        def on_step_end(self, *args, **kw):
            if device == "cuda":
                torch.cuda.synchronize()
            marks.append(time.perf_counter())

    cfg = GRPOConfig(
        num_generations=min(8, a.batch_size),
        max_new_tokens=a.response_length,
        max_prompt_length=a.max_prompt_length,
        stop_strings=[],
        learning_rate=a.learning_rate,
        max_steps=a.steps,
        batch_size=a.batch_size,
        lora_r=a.lora_r,
        lora_alpha=2 * a.lora_r,
        lora_dropout=0.0,
        bf16=a.dtype == "bf16",
        seed=a.seed,
    )
    scorer = RewardScorer(str(root / "reward"))
    scorer.model.to(device)
    trainer = grpo_trainer(cfg, str(root / "policy"), prompts, reward_function(scorer, []), root / "grpo_out", "none")
    trainer.add_callback(Clock())
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    trainer.train()
    total = time.perf_counter() - start
    step_s = [b - e for b, e in zip(marks[1:], marks[:-1])]
    return {
        "samples_per_second": a.steps * a.batch_size / total,
        "samples_per_second_steady": a.batch_size / steady(step_s) if steady(step_s) else None,
        "step_seconds": step_s,
        "step_seconds_steady": steady(step_s),
        "generated_tokens_per_second_step": a.batch_size * a.response_length / steady(step_s) if step_s else None,
        "peak_gpu_gib": torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None,
        "num_generations": cfg.num_generations,
    }
