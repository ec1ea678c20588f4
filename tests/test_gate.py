"""The eval gate's decision on hand-made eval reports, and the gated report it writes."""

import json
import math

import pytest

from kfrlhf.common.config import ConfigError, from_dict
from kfrlhf.gate.config import GateConfig
from kfrlhf.gate.gate import decide, run_gate

GOOD = {"reward_gain": 1.35, "reward_gain_stderr": 0.2, "kl": 3.4, "win_rate": 0.86, "reward_accuracy": 1.0}


def _failed(report: dict, **thresholds) -> dict[str, str]:
    decision = decide(report, GateConfig(**thresholds))
    failed = {c["name"] for c in decision["checks"] if not c["passed"]}
    assert decision["passed"] == (not failed) and len(decision["reasons"]) == len(failed)
    return dict(zip(sorted(failed), sorted(decision["reasons"])))


def test_a_good_report_passes_with_the_defaults():
    decision = decide(GOOD, GateConfig())
    assert decision["passed"] and decision["reasons"] == []
    gain = next(c for c in decision["checks"] if c["name"] == "reward_gain")
    assert gain["threshold"] == pytest.approx(2.0 * 0.2) and gain["value"] == 1.35


@pytest.mark.parametrize(
    "change, thresholds, failing, reason",
    [
        ({"reward_gain": 0.3}, {}, "reward_gain", "reward_gain 0.3 is not >= 2 x stderr 0.4"),
        ({"reward_gain": -0.1}, {}, "reward_gain", "reward_gain -0.1 is not >= 2 x stderr 0.4"),
        ({"kl": 12.5}, {}, "kl", "kl 12.5 is not <= 10"),
        ({"win_rate": 0.45}, {}, "win_rate", "win_rate 0.45 is not >= 0.5"),
        ({"reward_accuracy": 0.55}, {}, "reward_accuracy", "reward_accuracy 0.55 is not >= 0.6"),
        ({}, {"min_gain_stderrs": 10.0}, "reward_gain", "reward_gain 1.35 is not >= 10 x stderr 2"),
        ({}, {"max_kl": 3.0}, "kl", "kl 3.4 is not <= 3"),
        ({"kl": math.nan}, {}, "kl", "kl is missing from the eval report"),
        ({"reward_gain_stderr": math.inf}, {}, "reward_gain", "reward_gain is missing from the eval report"),
        ({"reward_accuracy": None}, {}, "reward_accuracy", "reward_accuracy is missing from the eval report"),
    ],
)
def test_each_failing_check_says_why(change, thresholds, failing, reason):
    assert _failed({**GOOD, **change}, **thresholds) == {failing: reason}


def test_every_failure_is_listed_and_a_negative_k_tolerates_a_loss():
    bad = {"reward_gain": -0.2, "reward_gain_stderr": 0.1, "kl": 20.0, "win_rate": 0.3}
    assert set(_failed(bad)) == {"reward_gain", "kl", "win_rate", "reward_accuracy"}
    assert "reward_gain" not in _failed(bad, min_gain_stderrs=-3.0)


@pytest.mark.parametrize("values", [{"max_kl": 0}, {"min_win_rate": 1.5}, {"min_reward_accuracy": -0.1}, {"k": 1}])
def test_bad_thresholds_are_refused(values):
    with pytest.raises(ConfigError):
        from_dict(GateConfig, values, "gate")


def test_the_gated_report_carries_the_decision(tmp_path, capsys):
    src = tmp_path / "eval"
    src.mkdir()
    (src / "report.json").write_text(json.dumps({**GOOD, "kl": 11.0, "samples": []}))
    (src / "report.md").write_text("# RLHF evaluation: tuned vs SFT\n")
    (src / "report.html").write_text("<html></html>")
    decision = run_gate({}, str(src), str(tmp_path / "gated"))
    report = json.loads((tmp_path / "gated" / "report.json").read_text())
    assert report["gate"] == decision and not decision["passed"] and report["kl"] == 11.0
    md = (tmp_path / "gated" / "report.md").read_text()
    assert md.startswith("## Eval gate") and "| kl | 11 | 10 | FAIL |" in md and "# RLHF evaluation" in md
    assert (tmp_path / "gated" / "report.html").exists()
    assert "eval gate failed, promotion skipped: kl 11 is not <= 10" in capsys.readouterr().out
