"""What `rlhf run` prints: a line per stage (`[3/7] reward`, a progress bar with ETA on a terminal, the
time taken), while each task's whole output goes to `OUTPUT/logs/<task>.log`; `--verbose` streams it too.

kfp.local prints every task's executor input, outputs and streamed output to stdout. `Console.capture`
replaces its subprocess runner and wraps its task executor for the run, so all of it lands in the log
files; a failed task leaves the last line of its traceback in `failure`.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# tqdm: "ppo:  42%|####      | 10/24 [00:04<00:05, 2.1step/s]"
BAR = re.compile(r"(\d+)/(\d+) \[([\d:]+)<([\d:?]+)")
# The `datasets` library's bars count examples (TRL's SFT: "Tokenizing train dataset: 861/1800 [00:00<00:00,
# 4417.11 examples/s]"): preparation, not the task's work.
PREPARING = " examples/s]"
RESUMED = re.compile(r"resuming from (\S+)")  # "SFT: resuming from .../checkpoint-8", "PPO: resuming from .../step-4"
# The last line of a traceback ("ValueError: ...", or one of our own exceptions by its module path:
# "kfrlhf.rlaif.stage.TooFewPairs: ..."), or the stages' own SIGTERM line.
ERROR = re.compile(
    r"^(?:[A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt)(?:: .*)?|kfrlhf(?:\.\w+)+: .*|.* stopped by SIGTERM .*)$"
)
LABELS = {
    "prepare-data": "data",
    "merge": "merge SFT",
    "merge-onto": "merge tuned",
}


# SIGHUP (the terminal or SSH session closed) is a stop like SIGTERM: the stage saves, the run says so.
SIGNAL_NAMES = {signal.SIGTERM: "SIGTERM", signal.SIGINT: "Ctrl-C", signal.SIGHUP: "SIGHUP"}


class Stopped(BaseException):
    """SIGTERM or Ctrl-C reached `rlhf run` (a BaseException: kfp's orchestrator must not swallow it)."""

    def __init__(self, when: str, signum: int = signal.SIGTERM):
        super().__init__(f"by {SIGNAL_NAMES[signum]} {when}")
        self.exit_code = 128 + signum


class Console:
    def __init__(self, log_dir: Path, total: int, verbose: bool = False, stream=None):
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()
        self.log_dir, self.total, self.verbose = log_dir, total, verbose
        self.index, self.task, self.log = 0, "", None
        self.times: dict[str, float] = {}
        self.failure: tuple[str, str] | None = None  # (task, last error line)
        self.stopping, self.proc, self._bar, self._drawn = 0, None, None, 0.0  # stopping: the signal number
        self.resumed: str | None = None  # the checkpoint the current task resumed from
        self.containers = None  # `rlhf run --runner container`: runs each task's command in its image

    def say(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def label(self, task: str) -> str:
        return f"[{self.index}/{self.total}] {LABELS.get(task, task)}"

    @contextlib.contextmanager
    def capture(self):
        """kfp.local's output into the log files for the pipeline call; SIGTERM forwarded to the running task.
        With `containers` set (a `kfrlhf.pipelines.local.containers.ContainerRunner`): each task's command in its
        stage's image."""
        containers = self.containers
        from kfp.local import status, subprocess_task_handler
        from kfp.local.orchestrator import task_executor

        run, execute = subprocess_task_handler.run_local_subprocess, task_executor.execute_single_task
        handler_run = subprocess_task_handler.SubprocessTaskHandler.run

        def run_in_image(handler):
            code = self._run(containers.command(handler.image, handler.full_command, handler.env_vars, self.task))
            containers.finished(self.task, handler.image)
            return status.Status.SUCCESS if code == 0 else status.Status.FAILURE

        def execute_task(*args, task_name, **kwargs):
            with self._task(task_name):
                return execute(*args, task_name=task_name, **kwargs)

        subprocess_task_handler.run_local_subprocess = self._run
        task_executor.execute_single_task = execute_task
        if containers:
            subprocess_task_handler.SubprocessTaskHandler.run = run_in_image
        previous = {sig: signal.signal(sig, self._stop) for sig in SIGNAL_NAMES}
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            with open(self.log_dir / "pipeline.log", "a", encoding="utf-8") as log, warnings.catch_warnings():
                warnings.filterwarnings("ignore", ".*custom or non-Python base image")  # our placeholder image
                self.log = log
                with contextlib.redirect_stdout(_Writer(self)):
                    yield self
        finally:
            subprocess_task_handler.run_local_subprocess, task_executor.execute_single_task = run, execute
            subprocess_task_handler.SubprocessTaskHandler.run = handler_run
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _stop(self, signum, frame):
        """SIGTERM or Ctrl-C: the running stage saves a checkpoint and exits 143, then the run stops."""
        self.stopping = signum
        if self.proc is None:
            raise Stopped(f"after {self.label(self.task)}" if self.task else "before the first stage", signum)
        # The task runs under `sh -c` in its own process group (out of the terminal's Ctrl-C): signal
        # the whole group, or the shell would die and leave the stage running to its end.
        os.killpg(self.proc.pid, signal.SIGTERM)

    @contextlib.contextmanager
    def _task(self, task: str):
        if self.stopping:
            raise Stopped(f"after {self.label(self.task)}", self.stopping)
        outer, self.task, self._bar, self.resumed = self.log, task, None, None
        self.index += 1
        started = time.time()
        if self.tty and not self.verbose:
            self._draw(force=True)
        try:
            with open(self.log_dir / f"{task}.log", "a", encoding="utf-8") as self.log:
                yield
        finally:
            self.log = outer
        self.times[task] = round(time.time() - started, 1)
        status = "failed" if self.failure and self.failure[0] == task else "done"
        resumed = f" (resumed from {self.resumed})" if self.resumed else ""
        self._line(f"{self.label(task):<22} {status} in {self.times[task]:.0f} s{resumed}")
        if self.stopping:
            raise Stopped(f"during {self.label(task)}", self.stopping)

    def _run(self, full_command: list[str], env_vars: dict | None = None) -> int:
        """kfp's run_local_subprocess, with the output split on newlines and tqdm's carriage returns."""
        if self.stopping:
            raise Stopped(f"during {self.label(self.task)}", self.stopping)
        env = {**os.environ, **(env_vars or {}), "PYTHONUNBUFFERED": "1"}
        last_error, pending = "", b""
        with subprocess.Popen(  # noqa: S603
            full_command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, start_new_session=True
        ) as proc:
            self.proc = proc
            for chunk in iter(lambda: proc.stdout.read1(65536), b""):
                *parts, pending = re.split(rb"(\r|\n)", pending + chunk)
                for text, end in zip(parts[::2], parts[1::2]):
                    line = text.decode("utf-8", "replace")
                    self._progress(line)
                    if end == b"\n" and line.strip():
                        self.write(line + "\n")
                        resumed = RESUMED.search(line)  # the stages' checkpoint log line
                        self.resumed = Path(resumed[1]).name if resumed else self.resumed
                        last_error = line.strip() if ERROR.match(line.strip()) else last_error
            code = proc.wait()
            self.proc = None
        if pending.strip():
            self.write(pending.decode("utf-8", "replace") + "\n")
        if code:
            self.failure = (self.task, last_error or f"the task exited with status {code}")
        return code

    def write(self, text: str) -> None:
        clean = ANSI.sub("", text)
        if self.log:
            self.log.write(clean)
            self.log.flush()
        if self.verbose:
            self.stream.write(text if self.tty else clean)

    def _progress(self, line: str) -> None:
        """Follow the task's longest bar of steps (a trainer's, not its evaluation's); a preparation bar only
        until the first bar of steps."""
        match = BAR.search(line)
        rank = (PREPARING not in line, int(match[2])) if match else None
        if match and (self._bar is None or rank >= self._bar[4]):
            self._bar = (int(match[1]), int(match[2]), match[3], match[4], rank)
            if self.tty and not self.verbose:
                self._draw()

    def _draw(self, force: bool = False) -> None:
        if not force and time.time() - self._drawn < 0.2:
            return
        self._drawn = time.time()
        text = f"{self.label(self.task):<22} running"
        if self._bar:
            done, total, elapsed, eta, _ = self._bar
            filled = int(24 * done / max(total, 1))
            bar = "█" * filled + "░" * (24 - filled)
            text = f"{self.label(self.task):<22} {bar} {done}/{total} {elapsed}, ETA {eta}"
        self.stream.write(f"\r\x1b[K{text}")
        self.stream.flush()

    def _line(self, text: str) -> None:
        self.stream.write(("\r\x1b[K" if self.tty and not self.verbose else "") + text + "\n")
        self.stream.flush()


class _Writer:
    """sys.stdout during the pipeline call: kfp's own lines go to the current log file."""

    def __init__(self, console: Console):
        self.console = console

    def write(self, text: str) -> int:
        self.console.write(text)
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False
