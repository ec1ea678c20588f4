"""`rlhf compare` on two hand-made run directories: the figures, the per-stage seconds (the method's own
tasks summed as `tune`), the Markdown and HTML files, and a directory that is no finished run."""

import json

import pytest

from kfrlhf.pipelines.cli import main
from kfrlhf.pipelines.local.compare import load_run


def _run(root, name, pipeline, gain, stderr, kl, win, times):
    path = root / name
    path.mkdir()
    report = dict(
        pipeline=pipeline, reward_gain=gain, reward_gain_stderr=stderr, kl=kl, kl_within_bound=kl <= 10.0,
        win_rate=win, wall_time_s=sum(times.values()) + 3.0, stage_times_s=times,
    )  # fmt: skip
    (path / "report.json").write_text(json.dumps(report))
    return path


SHARED = {"prepare-data": 5.0, "sft": 300.0, "merge": 10.0, "reward": 60.0, "merge-onto": 11.0, "evaluate": 40.0}


def test_compare_two_hand_made_runs(tmp_path, capsys):
    ppo = _run(tmp_path, "ppo-run", "rlhf", 1.5, 0.25, 2.5, 0.8, {**SHARED, "ppo": 120.0, "gate": 1.0, "promote": 2.0})
    rest_times = {**SHARED, "rest-grow": 20.0, "rest-improve": 30.0, "rest-grow-2": 21.0, "rest-improve-2": 31.0}
    rest = _run(tmp_path, "rest-run", "rest", 0.3, 0.2, 12.0, 0.55, {**rest_times, "gate": 1.0})
    row = load_run(rest)
    assert row["stages"] == {
        "data": 5.0,
        "sft": 300.0,
        "reward": 60.0,
        "tune": 102.0,
        "merge": 21.0,
        "eval": 40.0,
        "gate": 1.0,
    }
    assert row["z"] == pytest.approx(1.5) and not row["kl_within_bound"]
    assert main(["compare", str(ppo), str(rest), "--output", str(tmp_path / "cmp")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["run", "pipeline", "reward"]
    ppo_line, rest_line = lines[2], lines[3]
    assert ppo_line.split() == [
        "ppo-run",
        "rlhf",
        "+1.500",
        "±",
        "0.250",
        "6.0",
        "2.50",
        "0.80",
        "552",
        "5",
        "300",
        "60",
        "120",
        "21",
        "40",
        "3",
    ]
    assert rest_line.split()[:10] == [
        "rest-run",
        "rest",
        "+0.300",
        "±",
        "0.200",
        "1.5",
        "12.00",
        "(over",
        "bound)",
        "0.55",
    ]
    md = (tmp_path / "cmp" / "compare.md").read_text().splitlines()
    assert md[0].startswith("| run | pipeline | reward gain ± stderr |") and len(md) == 4
    assert "| ppo-run | rlhf | +1.500 ± 0.250 | 6.0 | 2.50 | 0.80 | 552 |" in md[2]
    page = (tmp_path / "cmp" / "compare.html").read_text()
    assert page.count("<circle") == 2 and "ppo-run</text>" in page and "rest-run</td>" in page


def test_a_directory_without_a_report_is_refused(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["compare", str(tmp_path / "empty")]) == 2
    assert "is not a finished run (rlhf run --output DIR): no report.json" in capsys.readouterr().err


def test_compare_writes_into_a_folder_of_its_own_by_default(tmp_path, monkeypatch, capsys):
    """Not the current directory, where a repository's own files live."""
    monkeypatch.chdir(tmp_path)
    run = _run(tmp_path, "ppo-run", "rlhf", 1.5, 0.25, 2.5, 0.8, SHARED)
    assert main(["compare", str(run)]) == 0
    assert sorted(p.name for p in (tmp_path / "runs" / "compare").iterdir()) == ["compare.html", "compare.md"]
    assert not list(tmp_path.glob("compare.*"))
    assert "written: runs/compare/compare.md" in capsys.readouterr().out
