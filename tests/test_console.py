"""What `rlhf run` prints and keeps: quiet stage lines, per-task logs, a failing stage named with its error
and log, the run lock, a full disk."""

import errno
import fcntl
import io
import re
import shutil
import sys

from kfrlhf.common.outputs import mark
from kfrlhf.pipelines.cli import main
from kfrlhf.pipelines.local import run as local_run
from kfrlhf.pipelines.local.console import Console

TASK = r"""
import sys
print("\x1b[95mhello\x1b[0m")
sys.stderr.write(" 10%|#  | 1/10 [00:01<00:09]\r 50%|#####  | 5/10 [00:02<00:02]\n")
raise ValueError("boom")
"""


def test_task_output_goes_to_its_log_and_the_error_is_kept(tmp_path):
    out = io.StringIO()  # not a terminal: no bar, no ANSI
    console = Console(tmp_path / "logs", total=3, stream=out)
    console.log_dir.mkdir()
    with console._task("sft"):
        assert console._run([sys.executable, "-c", TASK]) == 1
    log = (tmp_path / "logs" / "sft.log").read_text()
    assert "hello" in log and "\x1b" not in log
    assert "5/10" in log and "1/10" not in log  # a redrawn progress bar keeps its last state only
    assert console.failure == ("sft", "ValueError: boom")
    assert out.getvalue().startswith("[1/3] sft") and "failed in" in out.getvalue()
    assert "\x1b" not in out.getvalue()


def test_our_own_exceptions_are_the_error_too(tmp_path):
    """Diverged, TooFewPairs, CheckpointMismatch...: names without "Error", known by their module path."""
    console = Console(tmp_path / "logs", total=1, stream=io.StringIO())
    console.log_dir.mkdir()
    task = "from kfrlhf.rlaif.stage import TooFewPairs\nprint('Note: no error')\nraise TooFewPairs('at chance')"
    with console._task("rlaif"):
        assert console._run([sys.executable, "-c", task]) == 1
    assert console.failure == ("rlaif", "kfrlhf.rlaif.stage.TooFewPairs: at chance")


def test_a_second_run_on_the_same_output_is_refused(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    mark(out, "run")  # the other run's output
    with open(out / ".lock", "w") as held:
        held.write("4242")
        held.flush()
        fcntl.flock(held, fcntl.LOCK_EX)
        assert main(["run", "--report-to", "none", "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert (
        err
        == f"rlhf run: error: {out} is in use by another rlhf run (pid 4242); wait for it or choose another --output\n"
    )
    assert sorted(p.name for p in out.iterdir()) == [".lock", ".rlhf-output", "pipeline_root"]


def test_disk_full_is_one_clear_line(tmp_path, capsys, monkeypatch):
    def full(self):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Console, "capture", full)
    assert main(["run", "--report-to", "none", "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rlhf run: error: [Errno 28] the disk is full under ") and err.count("\n") == 1


def test_a_stage_that_dies_of_a_full_disk_says_so(tmp_path):
    console = Console(tmp_path / "logs", total=7, stream=io.StringIO())
    console.index, console.failure = 2, ("sft", "RuntimeError: basic_ios::clear: iostream error")
    message = local_run._failure_message(console, tmp_path)
    assert message.startswith("stage [2/7] sft failed: the disk is full (")
    assert message.endswith(f"iostream error (log: {tmp_path}/logs/sft.log)")


def test_failing_stage_is_named_in_the_last_line(tmp_path, capfd, tiny_lm_dir):
    """A real run whose SFT model's weights are corrupt (all its files there, so the checks before work pass):
    the data stage runs, SFT fails."""
    broken = shutil.copytree(tiny_lm_dir, tmp_path / "broken-model")
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    out = tmp_path / "out"
    argv = ["run", "--report-to", "none", "--output", str(out), "--set", f"sft.model_name={broken}"]
    assert main(argv) == 2
    printed = capfd.readouterr()
    last = printed.err.strip().splitlines()[-1]
    assert re.match(r"rlhf run: error: stage \[\d/9\] sft failed: ", last), last
    assert last.endswith(f"(log: {out}/logs/sft.log)") and "Error" in last
    assert "\x1b" not in printed.out + printed.err
    lines = printed.out.splitlines()  # the quiet console: a header and a line per stage
    assert lines[1].startswith("[1/9] data") and any(re.match(r"\[\d/9\] sft +failed", x) for x in lines), lines
    assert "executor_input" in (out / "logs" / "prepare-data.log").read_text()


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


PREPARE_THEN_TRAIN = r"""
import sys
# TRL's SFT, as its log has it: the datasets library's bars over 1,800 examples, then the trainer's 1,200 steps
# with an evaluation's bar between.
for n in (900, 1800):
    sys.stderr.write(f"\rTokenizing train dataset: {n // 18}%|#| {n}/1800 [00:00<00:00, 4417.11 examples/s]")
sys.stderr.write("\n\r  0%|          | 0/1200 [00:00<?, ?it/s]\r  4%|#  | 50/1200 [00:52<20:02,  1.05s/it]")
sys.stderr.write("\r 50%|#####  | 5/10 [00:01<00:01,  3.48it/s]\r  5%|#  | 61/1200 [01:03<19:44,  1.04s/it]\n")
"""


def test_the_bar_follows_training_steps_not_dataset_preparation(tmp_path):
    out = Terminal()
    console = Console(tmp_path / "logs", total=9, stream=out)
    console.log_dir.mkdir()
    with console._task("sft"):
        assert console._run([sys.executable, "-c", PREPARE_THEN_TRAIN]) == 0
        console._draw(force=True)
        shown = out.getvalue().rsplit("\r\x1b[K", 1)[1]
    assert "61/1200 01:03, ETA 19:44" in shown, shown
    console._bar = None  # a task that only prepares shows that
    console._progress("Packing train dataset:  50%|#| 900/1800 [00:00<00:00, 76560.90 examples/s]")
    assert console._bar[:2] == (900, 1800)
