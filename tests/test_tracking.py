"""W&B goes online only when asked (`rlhf run --report-to wandb`) with a key it accepts; a refused key is a
one-line error before any work."""

import pytest

from kfrlhf.common import tracking
from kfrlhf.pipelines import cli
from kfrlhf.pipelines.cli import main
from kfrlhf.pipelines.local import run as local_run

GOOD_FORMAT = "a" * 40


def test_no_key_stays_offline():
    assert tracking.check_wandb_key(None) is False and tracking.check_wandb_key("") is False


def test_key_refused_by_format():
    with pytest.raises(ValueError, match="W&B refused WANDB_API_KEY: API key must have 40\\+ characters, has 3"):
        tracking.check_wandb_key("abc")


def test_key_refused_by_the_server():
    def refuse(key):
        raise PermissionError("401 Unauthorized")

    with pytest.raises(ValueError, match="W&B refused WANDB_API_KEY: PermissionError: 401 Unauthorized"):
        tracking.check_wandb_key(GOOD_FORMAT, verify=refuse)
    assert tracking.check_wandb_key(GOOD_FORMAT, verify=lambda key: None) is True


@pytest.mark.parametrize(
    ("argv", "online"), [([], False), (["--report-to", "none"], False), (["--report-to", "wandb"], True)]
)
def test_online_only_when_asked(argv, online, monkeypatch, tmp_path, capsys):
    """A key in the environment alone never turns W&B online."""
    monkeypatch.setenv("WANDB_API_KEY", GOOD_FORMAT)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setattr(tracking, "_ask_wandb", lambda key: None)
    seen = {}

    def fake_run(cfg, output, pipeline, verbose, online, **_):  # the runner options (image_of) are not its concern
        seen["online"] = online
        return {"gate": {"passed": True}}

    monkeypatch.setattr(local_run, "run_local", fake_run)
    monkeypatch.setattr(cli, "print_summary", lambda report: None)  # a real report is not this test's subject
    assert main(["run", *argv, "--output", str(tmp_path / "out")]) == 0
    assert seen["online"] is online
    assert "report.html" in capsys.readouterr().out


def test_invalid_key_is_a_pre_run_error(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("WANDB_API_KEY", "not-a-key")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert main(["run", "--report-to", "wandb", "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rlhf run: error: W&B refused WANDB_API_KEY: ") and err.count("\n") == 1
    assert "not-a-key" not in err
    assert not (tmp_path / "out").exists()
