"""The eval report as Markdown (KFP Markdown artifact) and HTML with reward histograms (KFP HTML)."""

from __future__ import annotations

import html

HEADLINE = (
    "reward_before",
    "reward_after",
    "reward_gain",
    "reward_gain_stderr",
    "kl",
    "win_rate",
    "win_rate_second_judge",
    "reward_length_correlation_eval",
    "length_controlled_gain",
    "kl_temperature",
    "reward_accuracy",
    "sft_eval_loss",
)
LABELS = ("win_rate_judge", "second_judge", "kl_estimator")  # text rows


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").strip()


def markdown_report(report: dict, num_samples: int) -> str:
    lines = ["# RLHF evaluation: tuned vs SFT", "", "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {report[k]:.4g} |" for k in HEADLINE if k in report]
    lines += [f"| {k} | {_cell(report[k])} |" for k in LABELS if k in report]
    lines += [
        f"| prompts | {report['num_prompts']} |",
        "",
        "## Samples",
        "",
        "| prompt | SFT answer | reward | tuned answer | reward |",
        "|---|---|---|---|---|",
    ]
    for s in report["samples"][:num_samples]:
        lines.append(
            f"| {_cell(s['prompt'])} | {_cell(s['sft'])} | {s['reward_sft']:.2f} "
            f"| {_cell(s['tuned'])} | {s['reward_tuned']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def histogram_svg(before: list[float], after: list[float], bins: int = 20, width: int = 480, height: int = 160) -> str:
    """Two overlaid reward histograms (SFT grey, tuned blue) as an inline SVG."""
    lo, hi = min(before + after), max(before + after)
    span = (hi - lo) or 1.0

    def counts(values):
        c = [0] * bins
        for v in values:
            c[min(int((v - lo) / span * bins), bins - 1)] += 1
        return c

    cb, ca = counts(before), counts(after)
    top = max(cb + ca) or 1
    bar = width / bins
    rects = []
    for series, color in ((cb, "#999999"), (ca, "#1f77b4")):
        for i, n in enumerate(series):
            h = n / top * (height - 20)
            rects.append(
                f'<rect x="{i * bar:.1f}" y="{height - 20 - h:.1f}" width="{bar - 1:.1f}" '
                f'height="{h:.1f}" fill="{color}" fill-opacity="0.6"/>'
            )
    labels = (
        f'<text x="0" y="{height - 4}" font-size="11">{lo:.2f}</text>'
        f'<text x="{width - 40}" y="{height - 4}" font-size="11">{hi:.2f}</text>'
    )
    return f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">{"".join(rects)}{labels}</svg>'


def html_report(report: dict, num_samples: int) -> str:
    esc = html.escape
    metrics = "".join(f"<tr><td>{k}</td><td>{report[k]:.4g}</td></tr>" for k in HEADLINE if k in report)
    metrics += "".join(f"<tr><td>{k}</td><td>{esc(report[k])}</td></tr>" for k in LABELS if k in report)
    samples = "".join(
        f"<tr><td>{esc(s['prompt'])}</td><td>{esc(s['sft'])}</td><td>{s['reward_sft']:.2f}</td>"
        f"<td>{esc(s['tuned'])}</td><td>{s['reward_tuned']:.2f}</td></tr>"
        for s in report["samples"][:num_samples]
    )
    svg = histogram_svg([s["reward_sft"] for s in report["samples"]], [s["reward_tuned"] for s in report["samples"]])
    return (
        "<html><body style='font-family:sans-serif'><h2>RLHF evaluation: tuned vs SFT</h2>"
        f"<table border='1' cellpadding='4'>{metrics}</table>"
        "<h3>Reward distribution (grey: SFT, blue: tuned)</h3>"
        + svg
        + "<h3>Samples</h3><table border='1' cellpadding='4'><tr><th>prompt</th><th>SFT</th><th>reward</th>"
        f"<th>tuned</th><th>reward</th></tr>{samples}</table></body></html>\n"
    )
