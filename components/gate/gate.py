"""Eval gate: decide from the eval report whether the tuned model may be promoted.

Checks (GateConfig): reward gain >= k x stderr, KL <= bound, win rate >= w, reward-model accuracy
>= a. A missing or non-finite metric fails its check. The gated report is the eval report plus a
`gate` section ({passed, checks, reasons}) and a "Gate" section in report.md; the pipelines return
it and promote only when it passed (`dsl.If`).
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

from kfrlhf.common.checkpoint import atomic_dir
from kfrlhf.common.config import from_dict

from .config import GateConfig


def _number(report: dict, key: str) -> float | None:
    value = report.get(key)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def decide(report: dict, cfg: GateConfig) -> dict:
    """{passed, checks: [{name, value, threshold, passed}], reasons: [why each failed check failed]}."""
    gain, stderr = _number(report, "reward_gain"), _number(report, "reward_gain_stderr")
    bound = None if gain is None or stderr is None else cfg.min_gain_stderrs * stderr
    rules = [  # name, value, threshold, holds, what a failure says
        ("reward_gain", gain, bound, lambda v, t: v >= t, f">= {cfg.min_gain_stderrs:g} x stderr"),
        ("kl", _number(report, "kl"), cfg.max_kl, lambda v, t: v <= t, "<="),
        ("win_rate", _number(report, "win_rate"), cfg.min_win_rate, lambda v, t: v >= t, ">="),
        ("reward_accuracy", _number(report, "reward_accuracy"), cfg.min_reward_accuracy, lambda v, t: v >= t, ">="),
    ]
    checks, reasons = [], []
    for name, value, threshold, holds, wanted in rules:
        ok = value is not None and threshold is not None and holds(value, threshold)
        checks.append({"name": name, "value": value, "threshold": threshold, "passed": ok})
        if value is None or threshold is None:
            reasons.append(f"{name} is missing from the eval report")
        elif not ok:
            reasons.append(f"{name} {value:.4g} is not {wanted} {threshold:.4g}")
    return {"passed": not reasons, "checks": checks, "reasons": reasons}


def markdown(decision: dict) -> str:
    verdict = "**passed**: the model is promoted" if decision["passed"] else "**failed**: promotion skipped"
    lines = ["## Eval gate", "", f"Gate {verdict}.", "", "| check | value | threshold | result |", "|---|---|---|---|"]
    for c in decision["checks"]:
        value = "missing" if c["value"] is None else f"{c['value']:.4g}"
        threshold = "-" if c["threshold"] is None else f"{c['threshold']:.4g}"
        lines.append(f"| {c['name']} | {value} | {threshold} | {'pass' if c['passed'] else 'FAIL'} |")
    lines += [f"- {r}" for r in decision["reasons"]]
    return "\n".join(lines) + "\n"


def run_gate(gate: dict, eval_report: str, output_dir: str) -> dict:
    """The stage on directories: the eval report directory in, the gated report directory out."""
    cfg = from_dict(GateConfig, gate, "gate")
    src = Path(eval_report)
    report = json.loads((src / "report.json").read_text())
    decision = decide(report, cfg)
    report["gate"] = decision
    with atomic_dir(Path(output_dir)) as tmp:
        shutil.copytree(src, tmp, dirs_exist_ok=True)
        (tmp / "report.json").write_text(json.dumps(report, indent=2))
        (tmp / "report.md").write_text(markdown(decision) + "\n" + (src / "report.md").read_text())
    verdict = "passed" if decision["passed"] else "failed, promotion skipped: " + "; ".join(decision["reasons"])
    print(f"eval gate {verdict}", flush=True)
    return decision
