"""The GPU check: every pipeline and the training tests on CUDA, on one offline GPU machine, into one JSON.

Runs every pipeline (`registry.PIPELINES`) on the tiny preset with QLoRA (4-bit SFT) and bf16 in
every stage that has it (rlhf also loads PPO's policy in 4-bit, rlaif keeps it in bf16), side by side
(one process each: the GPU has room and kfp.local's stages are mostly start-up), then `rlhf generate` on the
tuned rlhf model, while the device and training tests run with their models on CUDA. Writes versions, the
GPU, and per pipeline its stage times, report figures and pass/fail. `--dry-run` (CI, no GPU): builds every
pipeline from the same config and collects the same tests, running nothing.

    make gpu-check                     # python -m benchmarks.gpu_check --json runs/gpu-check.json
    python -m benchmarks.gpu_check --dry-run --json /tmp/gpu-check.json
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kfrlhf.pipelines.definitions.registry import PIPELINES as REGISTRY

COMMON = ["sft.load_in_4bit=true", "sft.bf16=true", "sft.max_steps=300", "reward.bf16=true"]
# PPO's pipelines; every other pipeline is named after its tuning stage, which trains in bf16.
PPO_PIPELINES = {"rlhf": ["ppo.bf16=true", "ppo.load_in_4bit=true"], "rlaif": ["ppo.bf16=true"]}
PIPELINES = {name: PPO_PIPELINES.get(name, [f"{name}.bf16=true"]) for name in REGISTRY}
TESTS = [
    "tests/test_device.py",
    "tests/test_ppo_trainer.py",
    "tests/test_ppo_sampling.py",
    "tests/test_ppo_merged.py",
    "tests/test_ppo_static_cache.py",
    "tests/test_ppo_memory.py",
    "tests/test_precision.py",
    "tests/test_grpo.py",
    "tests/test_dpo.py",
    "tests/test_sft.py",
    "tests/test_reward.py",
]
FIGURES = ("reward_before", "reward_after", "reward_gain", "reward_gain_stderr", "kl", "win_rate", "reward_accuracy")
PACKAGES = ("torch", "transformers", "trl", "peft", "accelerate", "bitsandbytes", "kfp", "datasets")
GENERATE_PROMPT = "Question: How do I make tea?\n\nAnswer: "
ROOT = Path(__file__).resolve().parents[1]


def overrides(pipeline: str, extra: list[str] = ()) -> list[str]:
    return [*COMMON, *PIPELINES[pipeline], *extra]


def versions() -> dict:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def gpu() -> dict:
    import torch

    if not torch.cuda.is_available():
        return {"cuda": False}
    props = torch.cuda.get_device_properties(0)
    return {
        "cuda": torch.version.cuda,
        "name": props.name,
        "memory_gib": round(props.total_memory / 2**30, 1),
        "bf16": torch.cuda.is_bf16_supported(),
        "count": torch.cuda.device_count(),
    }


def stale_install() -> str | None:
    """A file of this checkout that the imported kfrlhf lacks or holds otherwise (a wheel from before a change)."""
    import kfrlhf
    import kfrlhf.pipelines

    roots = {"components": kfrlhf, "pipelines": kfrlhf.pipelines}
    for src_root, dst_root in ((ROOT / name, Path(pkg.__file__).parent) for name, pkg in roots.items()):
        for src in src_root.rglob("*.py"):
            dst = dst_root / src.relative_to(src_root)
            if not dst.is_file() or dst.read_bytes() != src.read_bytes():
                return str(src.relative_to(ROOT))
    return None


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "kfrlhf.pipelines.cli", *args]


def run_command(pipeline: str, output: Path, extra: list[str] = ()) -> list[str]:
    sets = [a for s in overrides(pipeline, extra) for a in ("--set", s)]
    return cli("run", "--pipeline", pipeline, "--output", str(output), "--report-to", "none", *sets)


def tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.splitlines()[-lines:])


def pipeline_result(output: Path, proc: subprocess.CompletedProcess, seconds: float) -> dict:
    result = {"passed": proc.returncode == 0, "exit": proc.returncode, "seconds": round(seconds, 1)}
    report_file = output / "report.json"
    if report_file.is_file():
        report = json.loads(report_file.read_text())
        result["stage_times_s"] = report.get("stage_times_s")
        result["figures"] = {k: report[k] for k in FIGURES if k in report}
        result["gate"] = {k: report.get("gate", {}).get(k) for k in ("passed", "reasons")}
    if not result["passed"]:
        result["error"] = tail(proc.stdout + proc.stderr)
    return result


def start(command: list[str], log: Path) -> tuple[subprocess.Popen, float]:
    log.parent.mkdir(parents=True, exist_ok=True)
    handle = log.open("w")
    return subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, text=True, cwd=ROOT), time.time()


def finish(
    proc: subprocess.Popen, started: float, log: Path, timeout: float
) -> tuple[subprocess.CompletedProcess, float]:
    try:
        proc.wait(timeout=max(1.0, timeout - (time.time() - started)))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    output = log.read_text(errors="replace")
    if proc.returncode in (-9, 137):
        output += f"\n(gpu-check: stopped after {timeout:.0f} s)"
    return subprocess.CompletedProcess(proc.args, proc.returncode, output, ""), time.time() - started


def check(work: Path, timeout: float, extra: list[str], tests: list[str]) -> dict:
    """Everything, on the GPU: the pipelines and the tests side by side, then generate on the rlhf model."""
    tests_log = work / "logs" / "tests.log"
    tests = start([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests], tests_log)
    running = {p: start(run_command(p, work / p, extra), work / "logs" / f"{p}.log") for p in PIPELINES}
    results = {}
    for name, (proc, started) in running.items():
        done, seconds = finish(proc, started, work / "logs" / f"{name}.log", timeout)
        results[name] = pipeline_result(work / name, done, seconds)
    generated = {"passed": False, "error": "the rlhf pipeline failed"}
    if results["rlhf"]["passed"]:
        command = cli("generate", "--model", str(work / "rlhf"), "--prompt", GENERATE_PROMPT, "max_new_tokens=16")
        proc = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=timeout)
        generated = {"passed": proc.returncode == 0 and bool(proc.stdout.strip()), "answer": tail(proc.stdout, 3)}
        if proc.returncode:
            generated["error"] = tail(proc.stderr)
    done, seconds = finish(*tests, tests_log, timeout)
    test_result = {"passed": done.returncode == 0, "seconds": round(seconds, 1), "summary": tail(done.stdout, 1)}
    if done.returncode:
        test_result["failures"] = [line for line in done.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]
    return {"pipelines": results, "generate": generated, "tests": test_result}


def dry_run(extra: list[str], tests: list[str]) -> dict:
    """No GPU: each pipeline built from the check's config, and the check's tests collected."""
    from kfrlhf.pipelines.definitions.registry import PIPELINES as BUILDERS
    from kfrlhf.pipelines.definitions.run_config import load_config

    results = {}
    for name in PIPELINES:
        func = BUILDERS[name](config=load_config("tiny", overrides=overrides(name, extra)))
        results[name] = {
            "passed": True,
            "stages": len(func.pipeline_spec.root.dag.tasks),
            "command": run_command(name, Path("OUT")),
        }
    command = [sys.executable, "-m", "pytest", "-q", "--collect-only", "-p", "no:cacheprovider", *tests]
    proc = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    tests = {"passed": proc.returncode == 0, "summary": tail(proc.stdout, 1)}
    return {"pipelines": results, "generate": {"passed": True, "skipped": "dry run"}, "tests": tests}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, required=True, help="where the summary goes")
    parser.add_argument("--work", type=Path, help="run folders and logs (default: a temporary folder)")
    parser.add_argument("--timeout", type=float, default=420, help="seconds per pipeline, test run and generate")
    parser.add_argument("--dry-run", action="store_true", help="no GPU: build the pipelines, collect the tests")
    parser.add_argument("--cpu", action="store_true", help="run it all without a GPU (to try the check itself)")
    parser.add_argument("--set", dest="extra", action="append", default=[], help="one more override, every pipeline")
    parser.add_argument("--tests", nargs="+", default=TESTS, help="the test files (default: the training tests)")
    args = parser.parse_args(argv)
    started = time.time()
    summary = {"mode": "dry-run" if args.dry_run else "gpu", "versions": versions(), "gpu": gpu()}
    stale = stale_install()
    if stale:
        print(f"gpu-check: the kfrlhf installed is not this checkout's ({stale}): make gpu-wheels", file=sys.stderr)
        return 2
    if args.dry_run:
        summary.update(dry_run(args.extra, args.tests))
    elif not summary["gpu"]["cuda"] and not args.cpu:
        print("gpu-check: no CUDA GPU here (--dry-run checks the set-up without one)", file=sys.stderr)
        return 2
    else:
        work = args.work or Path(tempfile.mkdtemp(prefix="gpu-check-"))
        summary["work"] = str(work)
        summary.update(check(work, args.timeout, args.extra, args.tests))
    parts = [*summary["pipelines"].values(), summary["generate"], summary["tests"]]
    summary["passed"] = all(p["passed"] for p in parts)
    summary["seconds"] = round(time.time() - started, 1)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(summary, indent=2))
    for name, result in summary["pipelines"].items():
        print(f"{name:6} {'passed' if result['passed'] else 'FAILED'}  {result.get('seconds', '')}")
    print(f"tests  {'passed' if summary['tests']['passed'] else 'FAILED'}  {summary['tests']['summary']}")
    print(f"gpu-check {'passed' if summary['passed'] else 'FAILED'} in {summary['seconds']} s: {args.json}")
    return 0 if summary["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
