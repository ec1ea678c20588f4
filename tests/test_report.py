"""The eval report: verdict, charts with labelled axes, optional length keys, run details; and (acceptance 3)
report.html rendered by headless Chromium is not blank and shows its axis labels."""

import shutil

import pytest
from PIL import Image

from benchmarks.docs_run import chromium
from kfrlhf.eval.report import html_report, markdown_report, verdict

SAMPLES = [
    {
        "prompt": f"Question: q{i}\n\nAnswer: ",
        "sft": "no " * (i % 5 + 1),
        "tuned": "thank you " * (i % 7 + 1),
        "reward_sft": 0.3 * (i % 5),
        "reward_tuned": 1.0 + 0.25 * (i % 7),
    }
    for i in range(40)
]
REPORT = {
    "reward_before": 0.6,
    "reward_after": 1.75,
    "reward_gain": 1.15,
    "reward_gain_stderr": 0.12,
    "kl": 3.4,
    "kl_bound": 10.0,
    "kl_within_bound": True,
    "win_rate": 0.9,
    "reward_accuracy": 1.0,
    "num_prompts": 40,
    "reward_length_correlation": 0.99,
    "length_controlled_gain": 0.21,
    "samples": SAMPLES,
}
RUN = {
    "output": "runs/latest",
    "config": {"data": {"sft_dataset": "sample"}, "sft": {"model_name": "tiny-opt", "seed": 42}, "report_to": "none"},
    "stage_times_s": {"prepare-data": 1.2, "sft": 72.0, "merge": 4.1, "reward": 8.0, "ppo": 10.3, "evaluate": 5.0},
}


def test_verdict_and_length_caution():
    text = verdict(REPORT)
    assert text.startswith("The tuned model beats SFT: reward +1.15 ± 0.12 (9.6 standard errors), win rate 90%")
    assert "correlates 0.99 with answer length" in text and "Length-controlled gain: +0.21" in text
    assert verdict(dict(REPORT, reward_gain=0.1)).startswith("No clear gain")
    assert verdict(dict(REPORT, reward_gain=0.0, reward_gain_stderr=0.0)).startswith(
        "No evidence of a gain: reward +0 ± 0"
    )
    small = verdict(dict(REPORT, reward_gain=0.01036, reward_gain_stderr=0.003368))  # a real model's reward scale
    assert small.startswith("The tuned model beats SFT: reward +0.0104 ± 0.0034 (3.1 standard errors)")
    assert verdict(dict(REPORT, kl=12.0, kl_within_bound=False)).startswith("Caution: KL 12.00 exceeds the bound 10")


def test_html_and_markdown_hold_what_a_reader_needs():
    page = html_report(REPORT, 6, RUN)
    for text in (
        "answer length (words)",
        ">reward<",
        ">prompts<",
        "Wall time per stage",
        "tiny-opt",
        "seeds",
        "reward_length_correlation",
        "KL(tuned",
    ):
        assert text in page, text
    md = markdown_report(REPORT, 6, RUN)
    assert "**Verdict:** The tuned model beats SFT" in md and "| sft | 72.0 s |" in md
    minimal = {k: v for k, v in REPORT.items() if k not in ("reward_length_correlation", "length_controlled_gain")}
    assert "reward_length_correlation" not in html_report(minimal, 6)  # optional keys, never required


@pytest.mark.skipif(not shutil.which("chromium"), reason="Debian's chromium is not installed (.ci/run installs it)")
def test_report_renders_in_headless_chromium(tmp_path):
    page = tmp_path / "report.html"
    page.write_text(html_report(REPORT, 6, RUN))
    shot = tmp_path / "report.png"
    run = chromium(page, tmp_path / "profile", f"--screenshot={shot}")
    assert shot.exists(), run.stderr.decode()[-2000:]
    image = Image.open(shot).convert("RGB")
    colors = image.getcolors(maxcolors=1 << 20)
    assert len(colors) > 50  # text, bars and points, not a blank page
    assert any(abs(r - 0x1F) < 30 and abs(g - 0x77) < 30 and abs(b - 0xB4) < 30 for _, (r, g, b) in colors)  # bars
    dom = chromium(page, tmp_path / "profile", "--dump-dom", text=True)
    for label in ("reward", "prompts", "answer length (words)"):
        assert f'class="axis">{label}</text>' in dom.stdout, label
