"""The eval report as Markdown (KFP Markdown artifact) and a self-contained HTML page (KFP HTML artifact).

Both open with a verdict line, then the headline metrics, the reward histograms and reward against
answer length (inline SVG with labelled axes, `svg_axes` and `svg_figure`; `rlhf compare` draws with
them too), KL against its bound, the run's details when the runner passes them (`run`: output,
config, seconds per stage) and the sample table. Optional keys (`reward_length_correlation`,
`reward_length_correlation_eval`, `length_controlled_gain` (+ `_stderr`), `win_rate_second_judge`, `kl_temperature`,
RLAIF's judging counts, and the text rows `win_rate_judge`, `second_judge`, `kl_estimator`) are shown
when the report has them.
"""

from __future__ import annotations

import html
import json
import math

HEADLINE = (
    "reward_before",
    "reward_after",
    "reward_gain",
    "reward_gain_stderr",
    "kl",
    "win_rate",
    "win_rate_ties",
    "reward_accuracy",
    "sft_eval_loss",
)
LENGTH_KEYS = (
    "reward_length_correlation",
    "reward_length_correlation_eval",
    "length_controlled_gain",
    "length_controlled_gain_stderr",
    "win_rate_second_judge",
    "kl_temperature",
)
# RLAIF's judging (pipelines/definitions/rlaif.py), when the report has it.
JUDGING_KEYS = ("rlaif_agreement_rate", "rlaif_kept_pairs", "rlaif_dropped_pairs", "rlaif_first_preferred")
# Text rows: who judged the win rates, how the KL was estimated.
LABELS = ("win_rate_judge", "second_judge", "kl_estimator")
LENGTH_BIAS = 0.5  # |correlation of reward with length| above this earns a caution in the verdict
W, H, PAD = 520, 220, 48  # SVG size and the margin that holds the axes' labels
GREY, BLUE = "#8c8c8c", "#1f77b4"


def verdict(report: dict) -> str:
    """One sentence: did tuning help, by how much, at what KL, and whether length explains it."""
    gain, se, kl = report.get("reward_gain", 0.0), report.get("reward_gain_stderr", 0.0), report.get("kl", 0.0)
    z = gain / se if se and se != float("inf") else 0.0
    bound = report.get("kl_bound")
    if bound is not None and not report.get("kl_within_bound", True):
        text = f"Caution: KL {kl:.2f} exceeds the bound {bound:g}; the tuned model drifted far from SFT."
    elif z >= 2:
        text = (
            f"The tuned model beats SFT: reward {gain:+.3g} ± {se:.2g} ({z:.1f} standard errors), "
            f"win rate {report.get('win_rate', 0):.0%}, KL {kl:.2f}"
            + (f" within the bound {bound:g}." if bound is not None else ".")
        )
    elif se == 0:
        text = f"No evidence of a gain: reward {gain:+.3g} ± 0, the same on every prompt (identical answers?)."
    else:
        text = f"No clear gain: reward {gain:+.3g} ± {se:.2g} ({z:.1f} standard errors)."
    corr = report.get("reward_length_correlation")
    if corr is not None and abs(corr) >= LENGTH_BIAS:
        text += f" Caution: the reward correlates {corr:.2f} with answer length, so part of the gain may be length."
        if "length_controlled_gain" in report:
            text += f" Length-controlled gain: {report['length_controlled_gain']:+.3g}."
    return text


def gate_line(report: dict) -> str:
    """The eval gate's decision and why (the gate stage adds `gate` to the report), or "" before the gate."""
    gate = report.get("gate")
    if not gate:
        return ""
    return f"eval gate {gate['summary']}"


def _words(text: str) -> int:
    return len(text.split())


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").strip()


def _fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _details(run: dict | None) -> list[tuple[str, str]]:
    """(name, value) rows about the run: data, models, seeds, wall time."""
    if not run:
        return []
    cfg = run.get("config", {})
    data = cfg.get("data", {})
    rows = [("output", run.get("output", ""))]
    rows += [(f"data: {k}", data[k]) for k in ("sft_dataset", "preference_dataset", "prompt_dataset") if data.get(k)]
    rows += [(f"{s} model", cfg[s]["model_name"]) for s in ("sft", "reward") if "model_name" in cfg.get(s, {})]
    seeds = ", ".join(f"{s} {v['seed']}" for s, v in cfg.items() if isinstance(v, dict) and "seed" in v)
    rows += [("seeds", seeds), ("tracking", cfg.get("report_to", ""))]
    return rows


def markdown_report(report: dict, num_samples: int, run: dict | None = None) -> str:
    lines = ["# RLHF evaluation: tuned vs SFT", "", f"**Verdict:** {verdict(report)}", ""]
    lines += ["| metric | value |", "|---|---|"]
    numbers = (*HEADLINE, *LENGTH_KEYS, *JUDGING_KEYS, "kl_bound")
    lines += [f"| {k} | {_fmt(report[k])} |" for k in numbers if k in report]
    lines += [f"| {k} | {_cell(str(report[k]))} |" for k in LABELS if k in report]
    lines += [f"| prompts | {report['num_prompts']} |", ""]
    if run:
        lines += ["## Run", "", "| | |", "|---|---|"]
        lines += [f"| {k} | {_cell(str(v))} |" for k, v in _details(run)]
        lines += [f"| {task} | {sec:.1f} s |" for task, sec in run.get("stage_times_s", {}).items()]
        lines += [""]
    lines += ["## Samples", "", "| prompt | SFT answer | reward | tuned answer | reward |", "|---|---|---|---|---|"]
    for s in report["samples"][:num_samples]:
        lines.append(
            f"| {_cell(s['prompt'])} | {_cell(s['sft'])} | {s['reward_sft']:.2f} "
            f"| {_cell(s['tuned'])} | {s['reward_tuned']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    return [lo + (hi - lo) * i / (n - 1) for i in range(n)]


def svg_axes(xlo, xhi, ylo, yhi, xlabel: str, ylabel: str):
    """SVG axes (lines, ticks, labels) and a function mapping data (x, y) to pixels."""
    xs, ys = (xhi - xlo) or 1.0, (yhi - ylo) or 1.0

    def at(x, y):
        return PAD + (x - xlo) / xs * (W - PAD - 10), H - PAD + 10 - (y - ylo) / ys * (H - PAD - 10)

    x0, y0 = at(xlo, ylo)
    parts = [f'<path d="M{x0},{PAD - 30} V{y0} H{W - 10}" stroke="#333" fill="none"/>']
    for t in _ticks(xlo, xhi):
        x, _ = at(t, ylo)
        parts.append(f'<text x="{x:.1f}" y="{y0 + 16}" text-anchor="middle">{t:.3g}</text>')
    for t in _ticks(ylo, yhi):
        _, y = at(xlo, t)
        parts.append(f'<text x="{x0 - 6}" y="{y + 4:.1f}" text-anchor="end">{t:.3g}</text>')
    parts.append(f'<text x="{(W + PAD) / 2}" y="{H - 6}" text-anchor="middle" class="axis">{xlabel}</text>')
    parts.append(
        f'<text transform="translate(12,{(H - PAD) / 2 + 10}) rotate(-90)" text-anchor="middle" class="axis">'
        f"{ylabel}</text>"
    )
    return parts, at


def svg_figure(parts: list[str], title: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" role="img" font-size="11">'
        f"<title>{html.escape(title)}</title>{''.join(parts)}</svg>"
    )


def histogram_svg(before: list[float], after: list[float], bins: int = 20) -> str:
    """The SFT (grey) and tuned (blue) reward distributions, overlaid, with axes."""
    lo, hi = min(before + after), max(before + after)
    span = (hi - lo) or 1.0

    def counts(values):
        c = [0] * bins
        for v in values:
            c[min(int((v - lo) / span * bins), bins - 1)] += 1
        return c

    cb, ca = counts(before), counts(after)
    parts, at = svg_axes(lo, lo + span, 0, max(cb + ca) or 1, "reward", "prompts")
    for series, color in ((cb, GREY), (ca, BLUE)):
        for i, n in enumerate(series):
            (x1, y1), (x2, y2) = at(lo + span * i / bins, n), at(lo + span * (i + 1) / bins, 0)
            parts.append(
                f'<rect x="{x1:.1f}" y="{y1:.1f}" width="{max(x2 - x1 - 1, 1):.1f}" height="{y2 - y1:.1f}" '
                f'fill="{color}" fill-opacity="0.55"/>'
            )
    return svg_figure(parts, "reward histogram")


def scatter_svg(samples: list[dict]) -> str:
    """Reward against answer length (words), SFT grey and tuned blue."""
    points = [(_words(s[m]), s[f"reward_{m}"], c) for s in samples for m, c in (("sft", GREY), ("tuned", BLUE))]
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    parts, at = svg_axes(0, max(xs) or 1, min(ys), max(ys), "answer length (words)", "reward")
    for x, y, color in points:
        cx, cy = at(x, y)
        parts.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="3" fill="{color}" fill-opacity="0.6"/>')
    return svg_figure(parts, "reward vs length")


def kl_bar(kl: float, bound: float | None) -> str:
    """KL as a bar against its bound."""
    kl = max(kl, 0.0) if math.isfinite(kl) else 0.0
    top = max(kl, bound or 0, 1e-9) * 1.1
    color = "#2ca02c" if bound is None or kl <= bound else "#d62728"
    mark = f'<div class="bound" style="left:{bound / top:.1%}">bound {bound:g}</div>' if bound else ""
    return f'<div class="kl"><div style="width:{kl / top:.1%};background:{color}">KL {kl:.2f}</div>{mark}</div>'


CSS = (
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:24px auto;padding:0 16px;color:#222}"
    "table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top}"
    ".verdict{padding:12px;border-radius:6px;background:#eef5fb;border-left:6px solid #1f77b4;font-size:1.1em}"
    ".charts{display:flex;flex-wrap:wrap;gap:16px}.axis{font-size:12px;font-weight:600}"
    ".kl{position:relative;width:520px;height:28px;background:#f3f3f3;margin:20px 0}"
    ".kl div:first-child{height:28px;color:#fff;padding-left:6px;line-height:28px;white-space:nowrap}"
    ".bound{position:absolute;top:-18px;border-left:2px dashed #333;height:46px;padding-left:4px;font-size:12px}"
    ".legend span{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px;vertical-align:middle}"
)


def html_report(report: dict, num_samples: int, run: dict | None = None) -> str:
    esc = html.escape
    samples = report["samples"]
    metrics = "".join(
        f"<tr><td>{k}</td><td>{html.escape(_fmt(report[k]))}</td></tr>"
        for k in (*HEADLINE, *LENGTH_KEYS, *JUDGING_KEYS, *LABELS)
        if k in report
    )
    rows = "".join(
        f"<tr><td>{esc(s['prompt'])}</td><td>{esc(s['sft'])}</td><td>{s['reward_sft']:.2f}</td>"
        f"<td>{esc(s['tuned'])}</td><td>{s['reward_tuned']:.2f}</td></tr>"
        for s in samples[:num_samples]
    )
    legend = (
        f'<p class="legend"><span style="background:{GREY}"></span>SFT<span style="background:{BLUE}"></span>tuned</p>'
    )
    charts = ""
    if samples:
        charts = (
            f"<h2>Rewards</h2>{legend}<div class='charts'>"
            f"<figure>{histogram_svg([s['reward_sft'] for s in samples], [s['reward_tuned'] for s in samples])}"
            "<figcaption>Reward of each answer, per model</figcaption></figure>"
            f"<figure>{scatter_svg(samples)}<figcaption>Reward against answer length</figcaption></figure></div>"
        )
    run_html = ""
    if run:
        details = "".join(f"<tr><td>{esc(k)}</td><td>{esc(str(v))}</td></tr>" for k, v in _details(run))
        times = run.get("stage_times_s", {})
        longest = max(times.values(), default=1) or 1
        stages = "".join(
            f"<tr><td>{esc(t)}</td><td>{s:.1f} s</td><td><div style='width:{200 * s / longest:.0f}px;"
            f"height:10px;background:{BLUE}'></div></td></tr>"
            for t, s in times.items()
        )
        config = esc(json.dumps(run.get("config", {}), indent=2))
        run_html = (
            f"<h2>Run</h2><table>{details}</table><h3>Wall time per stage</h3><table>{stages}</table>"
            f"<details><summary>Config</summary><pre>{config}</pre></details>"
        )
    gate = f"<p class='verdict'>{esc(gate_line(report))}</p>" if gate_line(report) else ""
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>RLHF evaluation</title><style>{CSS}</style></head>"
        f"<body><h1>RLHF evaluation: tuned vs SFT</h1><p class='verdict'>{esc(verdict(report))}</p>{gate}"
        f"<table>{metrics}<tr><td>prompts</td><td>{report['num_prompts']}</td></tr></table>"
        f"{charts}<h2>KL(tuned ‖ SFT)</h2>{kl_bar(report.get('kl', 0.0), report.get('kl_bound'))}"
        f"{run_html}<h2>Samples</h2><table><tr><th>prompt</th><th>SFT answer</th><th>reward</th>"
        f"<th>tuned answer</th><th>reward</th></tr>{rows}</table></body></html>\n"
    )
