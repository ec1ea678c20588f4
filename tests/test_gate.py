"""The eval gate's decision on hand-made eval reports, and the gated report it writes."""

import json
import math

import pytest

from kfrlhf.common.config import ConfigError, from_dict
from kfrlhf.gate.config import GateConfig
from kfrlhf.gate.stage import decide, wilson_lower_bound
from kfrlhf.gate.stage import run as run_gate

# The tiny preset's default run (README): every length tie, so both length baselines are 0.5 and the
# reward model's margin is 0.5 on every held-out pair.
GOOD = {
    "reward_gain": 2.1348,
    "reward_gain_stderr": 0.2731,
    "kl": 4.83,
    "win_rate": 0.6289,
    "win_rate_ties": 0,
    "num_prompts": 128,
    "reward_accuracy": 1.0,
    "reward_longer_wins": 0.5,
    "reward_shorter_wins": 0.5,
    "reward_margin_over_length": 0.5,
    "reward_margin_over_length_stderr": 0.0,
    "length_controlled_gain": 2.0123,
    "length_controlled_gain_stderr": 0.27,
}
# An SFT model evaluated against itself: the same answers, so every gain is 0 and every prompt a tie.
IDENTICAL = {
    **GOOD,
    "reward_gain": 0.0,
    "reward_gain_stderr": 0.0,
    "kl": 0.0,
    "win_rate": 0.5,
    "win_rate_ties": 128,
    "length_controlled_gain": 0.0,
    "length_controlled_gain_stderr": 0.0,
}


def _failed(report: dict, **thresholds) -> dict[str, str]:
    """{name: reason} of the failed required checks."""
    decision = decide(report, GateConfig(**thresholds))
    failed = [c for c in decision["checks"] if c["required"] and not c["passed"]]
    assert decision["passed"] == (not failed) and decision["reasons"] == [c["says"] for c in failed]
    return {c["name"]: c["says"] for c in failed}


def _check(report: dict, name: str, **thresholds) -> dict:
    return next(c for c in decide(report, GateConfig(**thresholds))["checks"] if c["name"] == name)


def test_the_tiny_default_run_passes_and_says_why():
    decision = decide(GOOD, GateConfig())
    assert decision["passed"] and decision["reasons"] == []
    assert decision["summary"].startswith("passed, the model is promoted: reward gain 2.13 ± 0.27, +7.8 standard")
    assert "win rate 0.629 (n 128, 95% lower bound 0.543): above 0.5" in decision["summary"]
    margin = _check(GOOD, "reward_margin_over_length")
    assert margin["passed"] and margin["statistic"] == math.inf and "0.5 on every held-out pair" in margin["says"]


def test_an_identical_model_fails_zero_spread_is_no_evidence():
    failed = _failed(IDENTICAL)
    assert set(failed) == {"reward_gain", "win_rate"}
    assert failed["reward_gain"] == (
        "reward gain 0 ± 0: zero spread (the same on every prompt) is no evidence of an improvement"
    )
    assert failed["win_rate"] == "win rate 0.5 (n 128, all tied): no prompt decided, no evidence of an improvement"
    # zero spread fails whatever k, and whatever the gain (a continuous reward never moves every prompt alike)
    assert "reward_gain" in _failed({**IDENTICAL, "reward_gain": 0.3}, min_gain_stderrs=-5.0)


@pytest.mark.parametrize(
    "gain, stderr, k, passes, says",
    [
        (0.2, 0.2, 2.0, False, "reward gain 0.2 ± 0.2, +1.0 standard errors: not at least 2 standard errors"),
        (0.39, 0.2, 2.0, False, "+1.9 standard errors: not at least 2"),
        (0.4, 0.2, 2.0, True, "reward gain 0.4 ± 0.2, +2.0 standard errors: at least 2 standard errors"),
        (-0.4, 0.2, 2.0, False, "-2.0 standard errors: not at least 2"),
        (0.0, 0.2, 0.0, False, "+0.0 standard errors: not above 0"),  # k = 0 still asks for a positive gain
        (-0.4, 0.2, -3.0, True, "-2.0 standard errors: at least -3"),  # a negative k tolerates a loss
    ],
)
def test_the_gain_needs_k_standard_errors_above_zero(gain, stderr, k, passes, says):
    check = _check({**GOOD, "reward_gain": gain, "reward_gain_stderr": stderr}, "reward_gain", min_gain_stderrs=k)
    assert check["passed"] == passes and says in check["says"]


def test_wilson_lower_bound():
    # by hand: (p + z^2/2n - z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n), z = 1.959964
    assert wilson_lower_bound(0.52, 128, 0.95) == pytest.approx(0.43422, abs=1e-4)
    assert wilson_lower_bound(0.62, 512, 0.95) == pytest.approx(0.57718, abs=1e-4)
    assert wilson_lower_bound(1.0, 10, 0.95) == pytest.approx(10 / (10 + 1.959964**2))


@pytest.mark.parametrize(
    "win_rate, n, level, passes",
    [(0.52, 128, 0.95, False), (0.62, 512, 0.95, True), (0.58, 128, 0.95, False), (0.58, 128, 0.8, True)],
)
def test_the_win_rate_is_decided_on_its_lower_bound(win_rate, n, level, passes):
    report = {**GOOD, "win_rate": win_rate, "num_prompts": n, "win_rate_ties": 0}
    check = _check(report, "win_rate", win_rate_level=level)
    assert check["passed"] == passes and check["statistic"] == pytest.approx(wilson_lower_bound(win_rate, n, level))
    if (win_rate, n) == (0.52, 128):
        assert check["says"] == "win rate 0.52 (n 128, 95% lower bound 0.434): not above 0.5"
    assert ("win_rate" in _failed(report, win_rate_level=level)) != passes


def test_ties_are_left_out_of_the_win_rate():
    # 104 of 128 prompts tied (the same answer), 20 of the other 24 won: the win rate counts a tie as half
    report = {**GOOD, "win_rate": (20 + 104 / 2) / 128, "win_rate_ties": 104}
    check = _check(report, "win_rate")
    assert check["passed"] and check["statistic"] == pytest.approx(wilson_lower_bound(20 / 24, 24, 0.95))
    assert check["says"] == "win rate 0.562 (n 128, 104 ties left out: 20 of 24 won, 95% lower bound 0.641): above 0.5"
    assert wilson_lower_bound(report["win_rate"], 128, 0.95) < 0.5  # ties as half a win would have failed it
    # 3 of 24 won: fails
    assert not _check({**report, "win_rate": (3 + 52) / 128}, "win_rate")["passed"]
    assert "win_rate" in _failed({**report, "win_rate_ties": 129}) and "win_rate" in _failed(
        {**report, "win_rate_ties": -1}
    )


def test_the_reward_model_must_beat_the_better_length_baseline():
    # the small preset: 0.5997 accuracy, shorter wins 0.542, margin 3.2 SE: passes, whatever its absolute accuracy
    small = {**GOOD, "reward_accuracy": 0.5997, "reward_longer_wins": 0.458, "reward_shorter_wins": 0.542}
    small |= {"reward_margin_over_length": 0.057, "reward_margin_over_length_stderr": 0.018}
    assert _failed(small) == {}
    assert _check(small, "reward_margin_over_length")["says"] == (
        "reward accuracy 0.6 over the better length baseline (shorter wins 0.542): margin 0.057 ± 0.018, "
        "+3.2 standard errors: at least 2 standard errors"
    )
    assert _failed({**small, "reward_accuracy": 0.55}) == {}  # no absolute floor by default
    assert set(_failed(small, min_reward_accuracy=0.6)) == {"reward_accuracy"}  # an optional floor
    # 0.61 where "longer wins" scores 0.87: a reward model that does worse than length alone
    longer = {**GOOD, "reward_accuracy": 0.61, "reward_longer_wins": 0.87, "reward_shorter_wins": 0.13}
    longer |= {"reward_margin_over_length": -0.26, "reward_margin_over_length_stderr": 0.03}
    assert set(_failed(longer)) == {"reward_margin_over_length"}
    assert (
        "(longer wins 0.87): margin -0.26 ± 0.03, -8.7 standard errors" in _failed(longer)["reward_margin_over_length"]
    )
    # zero spread at a margin of 0 (every pair scored like the baseline) is no evidence
    flat = {**GOOD, "reward_margin_over_length": 0.0}
    assert "zero spread" in _failed(flat)["reward_margin_over_length"]


def test_length_controlled_gain_is_shown_and_optionally_required():
    # the small preset's PPO run: gain 3.1 SE, of which the length-controlled part 0.0034 (~1 SE)
    report = {**GOOD, "length_controlled_gain": 0.0034, "length_controlled_gain_stderr": 0.0034}
    check = _check(report, "length_controlled_gain")
    assert not check["required"] and not check["passed"] and _failed(report) == {}
    failed = _failed(report, require_length_controlled_gain=True)
    assert failed == {"length_controlled_gain": "length-controlled gain 0.0034 ± 0.0034, +1.0 standard errors: not at "
                      "least 2 standard errors"}  # fmt: skip
    assert _failed(GOOD, require_length_controlled_gain=True) == {}


def test_second_judge_is_shown_and_optionally_required():
    assert "win_rate_second_judge" not in {c["name"] for c in decide(GOOD, GateConfig())["checks"]}
    weak = {**GOOD, "win_rate_second_judge": 0.55}
    check = _check(weak, "win_rate_second_judge")
    assert not check["required"] and check["says"] == (
        "second judge's win rate 0.55 (n 128, 95% lower bound 0.464): not above 0.5"
    )
    assert _failed(weak) == {}
    assert set(_failed(weak, require_second_judge=True)) == {"win_rate_second_judge"}
    assert _failed({**GOOD, "win_rate_second_judge": 0.7}, require_second_judge=True) == {}
    assert _failed(GOOD, require_second_judge=True) == {
        "win_rate_second_judge": "win_rate_second_judge is missing from the eval report"
    }


@pytest.mark.parametrize(
    "change, thresholds, failing, reason",
    [
        ({"kl": 12.5}, {}, "kl", "KL 12.5: above the bound 10"),
        ({}, {"max_kl": 3.0}, "kl", "KL 4.83: above the bound 3"),
        ({"kl": math.nan}, {}, "kl", "kl is missing from the eval report"),
        ({"reward_gain_stderr": math.inf}, {}, "reward_gain", "reward_gain is missing from the eval report"),
        ({"num_prompts": None}, {}, "win_rate", "win_rate is missing from the eval report"),
        ({"reward_margin_over_length": None}, {}, "reward_margin_over_length", "reward_margin_over_length is missing"),
        ({"reward_accuracy": 0.55}, {"min_reward_accuracy": 0.6}, "reward_accuracy", "reward accuracy 0.55: below"),
    ],
)
def test_each_failing_check_says_why(change, thresholds, failing, reason):
    failed = _failed({**GOOD, **change}, **thresholds)
    assert list(failed) == [failing] and failed[failing].startswith(reason)


@pytest.mark.parametrize(
    "values", [{"max_kl": 0}, {"min_win_rate": 1.5}, {"win_rate_level": 1.0}, {"min_reward_accuracy": -0.1}, {"k": 1}]
)
def test_bad_thresholds_are_refused(values):
    with pytest.raises(ConfigError):
        from_dict(GateConfig, values, "gate")


def test_the_gated_report_carries_the_decision(tmp_path, capsys):
    src = tmp_path / "eval"
    src.mkdir()
    (src / "report.json").write_text(json.dumps({**GOOD, "kl": 11.0, "samples": []}))
    (src / "report.md").write_text("# RLHF evaluation: tuned vs SFT\n")
    (src / "report.html").write_text("<html></html>")
    decision = run_gate({"require_length_controlled_gain": True}, str(src), str(tmp_path / "gated"))
    report = json.loads((tmp_path / "gated" / "report.json").read_text())
    assert report["gate"] == decision and not decision["passed"] and report["kl"] == 11.0
    md = (tmp_path / "gated" / "report.md").read_text()
    assert md.startswith("## Eval gate") and "| kl | 11 | 11 | <= 10 | FAIL |" in md and "# RLHF evaluation" in md
    assert "| win_rate | 0.6289 | 0.5426 | 95% Wilson lower bound, ties left out, > 0.5 | pass |" in md
    assert "| reward_accuracy | 1 | 1 | >= 0 | holds (not required) |" in md
    assert "- FAIL: KL 11: above the bound 10\n" in md and "- pass: length-controlled gain 2.01 ± 0.27" in md
    assert (tmp_path / "gated" / "report.html").exists()
    out = capsys.readouterr().out
    assert out == "eval gate failed, promotion skipped: KL 11: above the bound 10\n"
