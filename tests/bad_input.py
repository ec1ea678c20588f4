"""What every bad-input test checks (tests/test_bad_input*.py, one file per class of the issue-34 table:
data loss, hang, crash, silent, unclear): the real CLI exits non-zero with one line on stderr that names
the input, no traceback, and nothing written to `out/`."""

import json
from pathlib import Path

from kfrlhf.pipelines.cli import main


def lines(*rows) -> bytes:
    return b"".join((r if isinstance(r, bytes) else json.dumps(r).encode()) + b"\n" for r in rows)


def fails_cleanly(capsys, tmp_path: Path, argv: list[str], expected: str) -> str:
    """Run `rlhf ARGV` in `tmp_path`; assert the clean failure and that nothing was written."""
    rc = main(argv)
    out, err = capsys.readouterr()
    assert rc != 0
    assert err.count("\n") == 1 and err.startswith(f"rlhf {argv[0]}: error: "), err
    assert "Traceback" not in err + out
    assert "rlhf --debug shows the traceback" not in err  # an internal error: the message must name the input
    assert expected in err, err
    assert not (tmp_path / "out").exists()
    return err


def finished_run(path: Path, **extra) -> None:
    path.mkdir(parents=True)
    report = {"reward_gain": 1.0, "reward_gain_stderr": 0.5, "kl": 1.0, "win_rate": 0.5, **extra}
    (path / "report.json").write_text(json.dumps(report))


def snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else None for p in sorted(root.rglob("*"))}
