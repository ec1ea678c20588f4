"""`rlhf compare DIR...`: one table across finished runs (`rlhf run --output DIR`), from their report.json.

Per run: the pipeline, the eval's reward gain ± its paired standard error (and how many standard errors
that is), KL(tuned || SFT) against its bound, the win rate, the wall time and the seconds per stage.
`rlhf run` records each KFP task's seconds under `stage_times_s`, keyed by task name; here they are
summed into the stages every pipeline shares (data, SFT, reward, merge, eval, gate + promote) and
`tune`: the method's own tasks (PPO, DPO, ReST's Grow/Improve rounds, GRPO, ...). Writes the table as
`compare.md` and `compare.html`, the page with a plot of gain (± 2 standard errors) against KL.
"""

from __future__ import annotations

import html
import math
from pathlib import Path

from kfrlhf.common.outputs import read_report
from kfrlhf.eval.report import BLUE, CSS, svg_axes, svg_figure

# KFP task name (kfp.local names a task after its component) -> the column its seconds add to.
SHARED_TASKS = {
    "prepare-data": "data",
    "sft": "sft",
    "reward": "reward",
    "merge": "merge",
    "merge-onto": "merge",
    "evaluate": "eval",
    "gate": "gate",
    "promote": "gate",
}
STAGE_COLUMNS = ("data", "sft", "reward", "tune", "merge", "eval", "gate")
HEADER = ("run", "pipeline", "reward gain ± stderr", "z", "KL", "win rate", "wall s") + tuple(
    f"{c} s" for c in STAGE_COLUMNS
)


def load_run(run_dir: str | Path) -> dict:
    """One finished run's row: the headline figures and the seconds per stage column."""
    path = Path(run_dir) / "report.json"
    if not path.is_file():
        raise ValueError(f"{run_dir} is not a finished run (rlhf run --output DIR): no report.json")
    report = read_report(path, ("reward_gain", "kl", "win_rate"))
    times = report.get("stage_times_s", {})
    if not isinstance(times, dict) or not all(isinstance(s, (int, float)) for s in times.values()):
        raise ValueError(f"{path}: stage_times_s must map task names to seconds")
    stages = dict.fromkeys(STAGE_COLUMNS, 0.0)
    for task, seconds in times.items():
        stages[SHARED_TASKS.get(task, "tune")] += seconds
    gain, se = report["reward_gain"], report.get("reward_gain_stderr", math.nan)
    if isinstance(se, bool) or not isinstance(se, (int, float)):
        raise ValueError(f"{path}: reward_gain_stderr must be a number, got {str(se)[:60]}")
    return {
        "run": Path(run_dir).name,
        "pipeline": report.get("pipeline", "?"),
        "gain": gain,
        "stderr": se,
        "z": gain / se if se and math.isfinite(se) else math.nan,
        "kl": report["kl"],
        "kl_within_bound": report.get("kl_within_bound", True),
        "win_rate": report["win_rate"],
        "wall_s": report.get("wall_time_s", math.nan),
        "stages": stages,
    }


def run_names(run_dirs: list[str | Path]) -> list[str]:
    """Each run's folder name, with as many parent folders as tell apart runs of the same name (a/run, b/run);
    a folder given twice is refused."""
    paths = [Path(d).resolve() for d in run_dirs]
    for path in paths:
        if paths.count(path) > 1:
            raise ValueError(f"{path} is given twice: give each run once")
    for depth in range(1, max(len(p.parts) for p in paths) + 1):
        names = [Path(*p.parts[-depth:]).as_posix() for p in paths]
        if len(set(names)) == len(names):
            return names
    return [p.as_posix() for p in paths]


def cells(row: dict) -> list[str]:
    kl = f"{row['kl']:.2f}" + ("" if row["kl_within_bound"] else " (over bound)")
    return [
        row["run"],
        row["pipeline"],
        f"{row['gain']:+.3f} ± {row['stderr']:.3f}",
        f"{row['z']:.1f}",
        kl,
        f"{row['win_rate']:.2f}",
        f"{row['wall_s']:.0f}",
        *(f"{row['stages'][c]:.0f}" for c in STAGE_COLUMNS),
    ]


def text_table(rows: list[dict]) -> str:
    table = [list(HEADER)] + [cells(r) for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(HEADER))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in table]
    return "\n".join([lines[0], "-" * len(lines[0]), *lines[1:]]) + "\n"


def markdown_table(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    return "\n".join(lines + ["| " + " | ".join(cells(r)) + " |" for r in rows]) + "\n"


def gain_kl_svg(rows: list[dict]) -> str:
    """Each run's reward gain (bar: ± 2 standard errors) against its KL, labelled by run."""
    lows, highs = [r["gain"] - 2 * r["stderr"] for r in rows], [r["gain"] + 2 * r["stderr"] for r in rows]
    xlo, xhi, ytop = min(0.0, *lows), max(0.0, *highs), max(r["kl"] for r in rows) * 1.15 or 1.0
    parts, at = svg_axes(xlo, xhi, 0.0, ytop, "reward gain", "KL")
    (x0, y0), (_, y1) = at(0.0, ytop), at(0.0, 0.0)
    parts.append(f'<path d="M{x0:.1f},{y0:.1f} V{y1:.1f}" stroke="#bbb" stroke-dasharray="4"/>')  # no gain
    for r, lo, hi in zip(rows, lows, highs):
        (x1, y), (x2, _), (cx, _) = at(lo, r["kl"]), at(hi, r["kl"]), at(r["gain"], r["kl"])
        parts.append(f'<path d="M{x1:.1f},{y:.1f} H{x2:.1f}" stroke="{BLUE}" stroke-width="2"/>')
        parts.append(f'<circle cx="{cx:.1f}" cy="{y:.1f}" r="4" fill="{BLUE}"/>')
        parts.append(f'<text x="{cx + 6:.1f}" y="{y - 6:.1f}">{html.escape(r["run"])}</text>')
    return svg_figure(parts, "reward gain against KL")


PAGE_START = "<!DOCTYPE html><html><head><meta charset='utf-8'><title>rlhf compare</title>"


def html_page(rows: list[dict]) -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in HEADER)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in cells(r)) + "</tr>" for r in rows)
    return (
        f"{PAGE_START}<style>{CSS}</style></head>"
        f"<body><h1>Runs compared</h1><table><tr>{head}</tr>{body}</table>"
        f"<h2>Reward gain (± 2 standard errors) against KL(tuned ‖ SFT)</h2><figure>{gain_kl_svg(rows)}</figure>"
        "</body></html>\n"
    )


# How compare's own files begin: the only compare.md / compare.html it replaces (a user's are refused).
OWN_START = {"compare.md": "| " + " | ".join(HEADER) + " |", "compare.html": PAGE_START}


def check_output(output: str | Path) -> Path:
    """`output` if compare may write its two files there: it sits beside the runs, so it may hold anything else."""
    out = Path(output)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--output {out} is a file, not a directory: give the directory for compare.md/.html")
    for name, start in OWN_START.items():
        path = out / name
        if path.exists() and not (path.is_file() and path.read_text(errors="replace").startswith(start)):
            raise ValueError(f"--output {out} holds a {name} that rlhf compare did not write: give another directory")
    return out


def compare(run_dirs: list[str | Path], output: str | Path | None = None) -> str:
    """The text table of `run_dirs`; with `output`, compare.md and compare.html written there."""
    out = check_output(output) if output is not None else None
    rows = [load_run(d) for d in run_dirs]
    for row, name in zip(rows, run_names(run_dirs)):
        row["run"] = name
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "compare.md").write_text(markdown_table(rows))
        (out / "compare.html").write_text(html_page(rows))
    return text_table(rows)
