"""`make docs`: the figures the README and the docs quote from the tiny default run, made from one run of the
current code instead of pasted.

Runs `rlhf run` (the tiny RLHF pipeline, what `make run` runs) and `rlhf run --pipeline rlaif` into
runs/docs/, then rewrites each block between `<!-- make docs: NAME -->` and `<!-- /make docs -->` in
README.md and docs/*.md from those runs' report.json and console output (NAME is a key of `BLOCKS`), and
takes docs/report.png, the rlhf run's report.html in headless Chromium (Debian's `chromium`). Every block
says the machine, the date, the commit and the load average it was measured under.

    python -m benchmarks.docs_run              # both runs, then the files
    python -m benchmarks.docs_run --reuse      # the files again from the runs already in runs/docs
    python -m benchmarks.docs_run --reuse --runs DIR   # ... from the runs in DIR (e.g. another checkout's)
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import subprocess  # nosec B404: rlhf, git, lscpu and chromium with fixed argv
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = ROOT / "runs" / "docs"
PIPELINES = ("rlhf", "rlaif")
FILES = ("README.md", "docs/benchmarks.md", "docs/eval-gate.md", "docs/rlaif.md")
BLOCK = re.compile(r"(<!-- make docs: ([\w-]+) -->\n).*?(<!-- /make docs -->)", re.S)
# Headless Chromium without a display, a profile or the network (tests/test_report.py renders with the same).
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1200,1400",
    "--hide-scrollbars",
]


def chromium(page: Path, profile: Path, *action: str, **kwargs) -> subprocess.CompletedProcess:
    """Headless Chromium on `page` (a file) with `action` (`--screenshot=PATH`, `--dump-dom`)."""
    command = [shutil.which("chromium") or "chromium", *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *action]
    return subprocess.run([*command, page.as_uri()], capture_output=True, timeout=120, check=False, **kwargs)  # nosec B603


def machine() -> str:
    """'2 cores (Intel Xeon ...), 24 GiB': what the figures were measured on."""
    cpu = next((line.split(":", 1)[1].strip() for line in _lines(["lscpu"]) if line.startswith("Model name")), "?")
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({cpu}), {memory:.0f} GiB, no GPU" if not _gpu() else f"{os.cpu_count()} cores, GPU"


def _gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def _lines(command: list[str]) -> list[str]:
    result = subprocess.run(command, capture_output=True, text=True, check=False)  # nosec B603
    return result.stdout.splitlines()


def run(pipeline: str, runs: Path) -> None:
    """`rlhf run --pipeline PIPELINE --output RUNS/PIPELINE`: its console output and the load around it
    land in RUNS/PIPELINE.json."""
    output = runs / pipeline
    shutil.rmtree(output, ignore_errors=True)
    load_before, started = os.getloadavg()[0], time.time()
    rlhf = Path(sys.executable).with_name("rlhf")
    command = [str(rlhf), "run", "--output", str(output)] + (["--pipeline", pipeline] if pipeline != "rlhf" else [])
    print(f"make docs: {' '.join(command[1:])}", flush=True)
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=False)  # nosec B603
    if not (output / "report.json").is_file():  # a refused model still leaves a report, whatever the exit code
        sys.exit(
            f"make docs: rlhf run --pipeline {pipeline} failed (exit {result.returncode}):\n{result.stderr[-2000:]}"
        )
    commit = _lines(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    code = ["components", "pipelines", "setup.py", "pyproject.toml"]  # the docs it rewrites do not count
    dirty = bool(_lines(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no", "--", *code]))
    meta = {
        "command": "rlhf " + " ".join(command[1:]).replace(str(ROOT) + "/", ""),
        "console": result.stdout.replace(str(ROOT), "/…"),
        "wall_s": round(time.time() - started, 1),
        "load": [round(load_before, 1), round(os.getloadavg()[0], 1)],
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": (commit[0] if commit else "?") + ("+changes" if dirty else ""),
        "machine": machine(),
        "threads": os.environ.get("OMP_NUM_THREADS", ""),
    }
    (runs / f"{pipeline}.json").write_text(json.dumps(meta, indent=2))


def measured(meta: dict) -> str:
    """The line every block ends with: where and when its figures come from."""
    load = meta["load"]
    return (
        f"(`make docs`, {meta['date']}, commit {meta['commit']}: `{meta['command']}` on {meta['machine']}"
        + (f", OMP_NUM_THREADS={meta['threads']}" if meta.get("threads") else "")
        + "; "
        f"load average {load[0]:g} before, {load[1]:g} after)"
    )


def stage_times(report: dict) -> str:
    return ", ".join(f"{task} {seconds:.0f} s" for task, seconds in report["stage_times_s"].items())


def console_block(report: dict, meta: dict) -> str:
    return f"```\n{meta['console'].rstrip()}\n```\n\n{measured(meta)}\n"


def gate_says(report: dict, name: str) -> str:
    return next(c["says"] for c in report["gate"]["checks"] if c["name"] == name)


def run_summary(report: dict, meta: dict) -> str:
    """The run's headline figures in one paragraph (benchmarks.md, eval-gate.md)."""
    verdict = "passed, the model was promoted" if report["gate"]["passed"] else "failed, nothing was promoted"
    return (
        f"**{report['wall_time_s']:.0f} s wall time** ({stage_times(report)}); "
        f"{gate_says(report, 'reward_gain')}; {gate_says(report, 'win_rate')}; {gate_says(report, 'kl')}; "
        f"SFT eval loss {report['sft_eval_loss']:.3f}, reward accuracy {report['reward_accuracy']:.3f}; "
        f"the eval gate {verdict}.\n\n{measured(meta)}\n"
    )


def samples(report: dict, meta: dict, rows: int = 4) -> str:
    """The first sample rows: the same prompt answered by the SFT model and the tuned one."""
    lines = ["| prompt | SFT answer (reward) | tuned answer (reward) |", "|---|---|---|"]
    for s in report["samples"][:rows]:
        cells = (s["prompt"], f"{s['sft']} ({s['reward_sft']:.2f})", f"{s['tuned']} ({s['reward_tuned']:.2f})")
        lines.append("| " + " | ".join(" ".join(c.split()).replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + f"\n\n{measured(meta)}\n"


def rlaif_run(report: dict, meta: dict) -> str:
    """The judge's labelling figures (`kfrlhf.rlaif.stage`'s metrics, carried into the report), then the run's."""
    r = report
    judging = (
        f"Judging: {r['rlaif_pairs']:.0f} pairs, **{r['rlaif_kept_pairs']:.0f} kept, {r['rlaif_dropped_pairs']:.0f}"
        f" dropped** (agreement {r['rlaif_agreement_rate']:.3f}); {r['rlaif_train_pairs']:.0f} training /"
        f" {r['rlaif_eval_pairs']:.0f} held-out pairs; position A chosen in {r['rlaif_first_preferred']:.2f} of the"
        " judgements. "
    )
    return judging + run_summary(report, meta)


BLOCKS = {  # NAME: (pipeline, what the block shows)
    "console": ("rlhf", console_block),
    "samples": ("rlhf", samples),
    "rlhf-run": ("rlhf", run_summary),
    "rlaif-run": ("rlaif", rlaif_run),
}


def rewrite(path: Path, runs: dict) -> bool:
    """Each `make docs` block of `path` from its run; True when the file changed."""
    text = path.read_text()

    def block(match: re.Match) -> str:
        name = match.group(2)
        if name not in BLOCKS:
            sys.exit(f"make docs: {path}: unknown block {name!r} (known: {', '.join(BLOCKS)})")
        pipeline, make = BLOCKS[name]
        if pipeline not in runs:  # --reuse with that pipeline's run missing: the block stays as it was
            print(f"make docs: {path.name}: block {name} kept, no {pipeline} run")
            return match.group(0)
        return match.group(1) + make(*runs[pipeline]) + match.group(3)

    new = BLOCK.sub(block, text)
    path.write_text(new)
    return new != text


def screenshot(page: Path, shot: Path) -> None:
    if not shutil.which("chromium"):
        sys.exit("make docs: no chromium for docs/report.png: apt-get install -y chromium")
    with tempfile.TemporaryDirectory() as tmp:
        result = chromium(page, Path(tmp), f"--screenshot={shot}")
    if result.returncode or not shot.is_file():
        sys.exit(f"make docs: chromium failed: {result.stderr.decode()[-2000:]}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.docs_run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--reuse", action="store_true", help="rewrite the files from the runs already made")
    parser.add_argument("--runs", type=Path, default=RUNS, help=f"where the runs are (default {RUNS})")
    args = parser.parse_args(argv)
    args.runs.mkdir(parents=True, exist_ok=True)
    if not args.reuse:
        for pipeline in PIPELINES:
            run(pipeline, args.runs)
    runs = {}
    for p in PIPELINES:
        if not (args.runs / f"{p}.json").is_file():
            continue
        report, meta = (
            json.loads(path.read_text()) for path in (args.runs / p / "report.json", args.runs / f"{p}.json")
        )
        runs[p] = (report, meta)
    if "rlhf" not in runs:
        sys.exit(f"make docs: no rlhf run in {args.runs}: run without --reuse")
    screenshot(args.runs / "rlhf" / "report.html", ROOT / "docs" / "report.png")
    changed = [name for name in FILES if rewrite(ROOT / name, runs)]
    print(f"make docs: docs/report.png; {', '.join(changed) or 'no file'} changed")


if __name__ == "__main__":
    main()
