"""`make docs` (benchmarks/docs_run.py) rewrites only its marked blocks, from the run's report and console output."""

import pytest

from benchmarks import docs_run
from kfrlhf.gate.config import GateConfig
from kfrlhf.gate.stage import decide

EVAL = {
    "num_prompts": 128,
    "reward_gain": 1.5,
    "reward_gain_stderr": 0.2,
    "kl": 2.5,
    "win_rate": 0.7,
    "win_rate_ties": 8,
    "reward_accuracy": 1.0,
    "reward_margin_over_length": 0.5,
    "reward_margin_over_length_stderr": 0.0,
    "reward_longer_wins": 0.5,
    "reward_shorter_wins": 0.5,
    "sft_eval_loss": 0.61,
}
META = {
    "command": "rlhf run --output runs/docs/rlhf",
    "console": "rlhf run: rlhf pipeline, 9 stages; logs in /…/runs/docs/rlhf/logs\n[1/9] data   done in 3 s\n",
    "load": [1.5, 1.8],
    "date": "2026-12-07 18:00 UTC",
    "commit": "abc1234",
    "machine": "2 cores (a CPU), 24 GiB, no GPU",
    "threads": "",
}


def report() -> dict:
    samples = [{"prompt": "Q|1", "sft": "Ugh.", "tuned": "Thanks!", "reward_sft": -1.0, "reward_tuned": 2.0}]
    run = {"wall_time_s": 61.0, "stage_times_s": {"data": 3.0, "sft": 30.0}, "samples": samples}
    return {**EVAL, **run, "gate": decide(EVAL, GateConfig())}


def test_blocks_rewritten_from_the_run_and_the_rest_kept(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "intro\n<!-- make docs: console -->\nold output\n<!-- /make docs -->\nmiddle\n"
        "<!-- make docs: rlhf-run -->\n<!-- /make docs -->\n<!-- make docs: samples -->\nx\n<!-- /make docs -->\nend\n"
    )
    assert docs_run.rewrite(page, {"rlhf": (report(), META)})
    text = page.read_text()
    assert (
        text.startswith("intro\n<!-- make docs: console -->\n```\nrlhf run: rlhf pipeline") and "old output" not in text
    )
    assert "middle\n" in text and text.endswith("<!-- /make docs -->\nend\n")
    assert "**61 s wall time** (data 3 s, sft 30 s)" in text and "win rate 0.7 (n 128, 8 ties left out" in text
    assert "the eval gate passed, the model was promoted" in text
    assert "| Q\\|1 | Ugh. (-1.00) | Thanks! (2.00) |" in text  # a '|' in a sample does not split its cell
    assert text.count("commit abc1234: `rlhf run --output runs/docs/rlhf` on 2 cores") == 3
    assert not docs_run.rewrite(page, {"rlhf": (report(), META)})  # the same run again: nothing changes


def test_a_block_without_its_run_is_kept_and_an_unknown_block_refused(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("<!-- make docs: rlaif-run -->\nas before\n<!-- /make docs -->\n")
    assert not docs_run.rewrite(page, {"rlhf": (report(), META)})
    page.write_text("<!-- make docs: nonsense -->\n<!-- /make docs -->\n")
    with pytest.raises(SystemExit, match="unknown block 'nonsense'"):
        docs_run.rewrite(page, {"rlhf": (report(), META)})
