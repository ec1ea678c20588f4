"""Eval gate: decide from the eval report whether the tuned model may be promoted.

Rules (GateConfig): the reward gain is positive and >= k paired standard errors, with a nonzero
standard error; KL <= bound; the Wilson lower bound of the win rate over the untied prompts is above
`min_win_rate`; the reward model beats the better length baseline by >= k paired standard errors;
optionally the second judge's win rate, the length-controlled gain and an absolute accuracy floor.
A missing or non-finite metric fails its check. Every check carries a sentence (`says`) with its
figures and why it holds or not. The gated report is the eval report plus a `gate` section
({passed, summary, checks, reasons}) and a "Gate" section in report.md; the pipelines return it and promote
only when it passed (`dsl.If`).
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from statistics import NormalDist

from kfrlhf.common.atomic import atomic_dir
from kfrlhf.common.config import from_dict

from .config import GateConfig


def _number(report: dict, key: str) -> float | None:
    value = report.get(key)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def wilson_lower_bound(p: float, n: int, level: float) -> float:
    """The lower end of the Wilson score interval of a proportion p over n trials, at a two-sided level."""
    z = NormalDist().inv_cdf((1 + level) / 2)
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - spread) / (1 + z * z / n)


def _check(name, value, statistic, rule, passed, says, required=True) -> dict:
    return dict(name=name, value=value, statistic=statistic, rule=rule, passed=passed, required=required, says=says)


def _missing(name: str, rule: str, required: bool = True) -> dict:
    return _check(name, None, None, rule, False, f"{name} is missing from the eval report", required)


def _stderrs(report, name, label, k, item, required=True, zero_spread_ok=False) -> dict:
    """`name` is positive and >= k x its standard error (`name`_stderr); a negative k tolerates a loss.
    Zero spread (the same value on every `item`) is no evidence, unless `zero_spread_ok` and it is positive."""
    value, stderr = _number(report, name), _number(report, f"{name}_stderr")
    rule = f"value / SE >= {k:g}" + ("" if zero_spread_ok else ", SE > 0")
    if value is None or stderr is None:
        return _missing(name, rule, required)
    if stderr == 0 and not (zero_spread_ok and value > 0):
        says = f"{label} {value:.3g} ± 0: zero spread (the same on every {item}) is no evidence of an improvement"
        return _check(name, value, None, rule, False, says, required)
    if not stderr:
        return _check(name, value, math.inf, rule, True, f"{label} {value:.3g} on every {item} (zero spread)", required)
    z = value / stderr
    ok = z >= k and (z > 0 or k < 0)
    why = f"at least {k:g} standard errors" if ok else f"not at least {k:g} standard errors" if z < k else "not above 0"
    return _check(
        name, value, z, rule, ok, f"{label} {value:.3g} ± {stderr:.2g}, {z:+.1f} standard errors: {why}", required
    )


def _win_rate(report: dict, name: str, label: str, cfg: GateConfig, required: bool) -> dict:
    """The Wilson lower bound of the share of decided prompts won must be above `min_win_rate`. Ties
    (`name`_ties: the same reward, mostly the same answer) say nothing about which model is better: they
    are left out, as in a sign test (a report without the count has them as half a win each, in n)."""
    level = f"{cfg.win_rate_level * 100:g}%"
    rule = f"{level} Wilson lower bound, ties left out, > {cfg.min_win_rate:g}"
    p, n, ties = _number(report, name), report.get("num_prompts"), report.get(f"{name}_ties", 0)
    if p is None or not isinstance(n, int) or n < 1 or not isinstance(ties, int) or not 0 <= ties <= n:
        return _missing(name, rule, required)
    if ties == n:
        says = f"{label} {p:.3g} (n {n}, all tied): no prompt decided, no evidence of an improvement"
        return _check(name, p, None, rule, False, says, required)
    decided, wins = n - ties, p * n - ties / 2  # the win rate counts a tie as half a win
    lower = wilson_lower_bound(wins / decided, decided, cfg.win_rate_level)
    ok = lower > cfg.min_win_rate
    counts = f"n {n}" + (f", {ties} ties left out: {wins:g} of {decided} won" if ties else "")
    why = f"{'above' if ok else 'not above'} {cfg.min_win_rate:g}"
    return _check(
        name, p, lower, rule, ok, f"{label} {p:.3g} ({counts}, {level} lower bound {lower:.3g}): {why}", required
    )


def _bound(report, name, label, threshold, at_most, required=True) -> dict:
    """`name` <= threshold (`at_most`: a bound) or >= threshold (a floor)."""
    value = _number(report, name)
    rule = f"{'<=' if at_most else '>='} {threshold:g}"
    if value is None:
        return _missing(name, rule, required)
    ok = value <= threshold if at_most else value >= threshold
    if at_most:
        why = f"{'within' if ok else 'above'} the bound {threshold:g}"
    else:
        why = f"{'at least' if ok else 'below'} the floor {threshold:g}" if required else "no floor set"
    return _check(name, value, value, rule, ok, f"{label} {value:.3g}: {why}", required)


def decide(report: dict, cfg: GateConfig) -> dict:
    """{passed, summary, checks: [{name, value, statistic, rule, passed, required, says}], reasons: [says of
    each failed required check]}. Checks that are not required are shown and do not decide. `summary`: one
    line, the verdict and why (the failed checks, or every required one that passed)."""
    baselines = {k: report[f"reward_{k}_wins"] for k in ("longer", "shorter") if f"reward_{k}_wins" in report}
    best = max(baselines, key=baselines.get, default=None)
    baseline = f"{best} wins {baselines[best]:.3g}" if best else "missing"
    accuracy = "missing" if _number(report, "reward_accuracy") is None else f"{report['reward_accuracy']:.3g}"
    checks = [
        _stderrs(report, "reward_gain", "reward gain", cfg.min_gain_stderrs, "prompt"),
        _bound(report, "kl", "KL", cfg.max_kl, at_most=True),
        _win_rate(report, "win_rate", "win rate", cfg, required=True),
        _stderrs(
            report,
            "reward_margin_over_length",
            f"reward accuracy {accuracy} over the better length baseline ({baseline}): margin",
            cfg.min_reward_margin_stderrs,
            "held-out pair",
            zero_spread_ok=True,  # one of -1, -0.5, 0, 0.5, 1 a pair: the same positive margin on every pair
        ),
        _bound(
            report, "reward_accuracy", "reward accuracy", cfg.min_reward_accuracy, False, cfg.min_reward_accuracy > 0
        ),
        _stderrs(
            report,
            "length_controlled_gain",
            "length-controlled gain",
            cfg.min_gain_stderrs,
            "prompt",
            required=cfg.require_length_controlled_gain,
        ),
    ]
    if cfg.require_second_judge or "win_rate_second_judge" in report:
        checks.append(
            _win_rate(report, "win_rate_second_judge", "second judge's win rate", cfg, cfg.require_second_judge)
        )
    reasons = [c["says"] for c in checks if c["required"] and not c["passed"]]
    why = "; ".join(reasons or [c["says"] for c in checks if c["required"]])
    summary = f"{'failed, promotion skipped' if reasons else 'passed, the model is promoted'}: {why}"
    return {"passed": not reasons, "summary": summary, "checks": checks, "reasons": reasons}


def _result(check: dict) -> str:
    if check["required"]:
        return "pass" if check["passed"] else "FAIL"
    return f"{'holds' if check['passed'] else 'does not hold'} (not required)"


def markdown(decision: dict) -> str:
    verdict = "**passed**: the model is promoted" if decision["passed"] else "**failed**: promotion skipped"
    lines = ["## Eval gate", "", f"Gate {verdict}.", ""]
    lines += ["| check | value | statistic | rule | result |", "|---|---|---|---|---|"]
    for c in decision["checks"]:
        value = "missing" if c["value"] is None else f"{c['value']:.4g}"
        stat = "-" if c["statistic"] is None else f"{c['statistic']:.4g}"
        lines.append(f"| {c['name']} | {value} | {stat} | {c['rule']} | {_result(c)} |")
    lines += ["", "Why:", ""] + [f"- {_result(c)}: {c['says']}" for c in decision["checks"]]
    return "\n".join(lines) + "\n"


def run(gate: dict, eval_report: str, output_dir: str) -> dict:
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
    print(f"eval gate {decision['summary']}", flush=True)
    return decision
