"""Hangs: every call outside the process is bounded. `rlhf submit --timeout` bounds the whole command (each
KFP API call's connect and read too), and a file given as input that is not a regular file (a FIFO would
block the open forever) is refused before it is opened."""

import os
import socket
import threading

import pytest

from tests.bad_input import fails_cleanly
from tests.test_submit import FakeKFP

MODEL = {"m/config.json": b"{}", "m/model.safetensors": b"", "m/tokenizer.json": b"{}"}


@pytest.fixture
def silent_server():
    """A server that accepts connections (the kernel's backlog) and never answers. After 60 s it closes,
    resetting them: a regression fails on the message instead of hanging the suite."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=16)
    timer = threading.Timer(60, listener.close)
    timer.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    timer.cancel()
    listener.close()


def test_submit_to_a_server_that_never_answers_ends_at_the_timeout(silent_server, capsys, tmp_path):
    err = fails_cleanly(capsys, tmp_path, ["submit", "--host", silent_server, "--timeout", "2"], silent_server)
    assert "accepted the connection but did not answer GET /apis/v2beta1/healthz within 2 s" in err


class RunningForever(FakeKFP):
    """The fake KFP API of test_submit, whose run never finishes."""

    def do_GET(self):  # noqa: N802 (http.server naming)
        if self.path.startswith("/apis/v2beta1/runs/run-1"):
            self._record()
            return self._reply({"run_id": "run-1", "state": "RUNNING"})
        return super().do_GET()


def test_submit_wait_ends_at_the_timeout(capsys, tmp_path):
    from http.server import ThreadingHTTPServer

    server = ThreadingHTTPServer(("127.0.0.1", 0), RunningForever)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        host = f"http://127.0.0.1:{server.server_port}"
        err = fails_cleanly(capsys, tmp_path, ["submit", "--host", host, "--wait", "--timeout", "2"], host)
    finally:
        server.shutdown()
        server.server_close()
    assert "/#/runs/details/run-1 had not finished when --timeout ran out; it goes on running" in err


# name: (argv with FIFO standing for the named pipe, expected text)
FIFO_INPUTS = {
    "run-config": (["run", "--config", "FIFO", "--output", "out/x"], "config file FIFO is a FIFO (a named pipe)"),
    "config-config": (["config", "--config", "FIFO"], "config file FIFO is a FIFO"),
    "submit-params": (["submit", "--host", "http://127.0.0.1:9", "--params", "FIFO"], "config file FIFO is a FIFO"),
    "submit-package": (["submit", "--host", "http://127.0.0.1:9", "--package", "FIFO"], "--package FIFO is a FIFO"),
    "generate-prompts": (["generate", "--model", "m", "--prompts", "FIFO"], "FIFO: is a FIFO"),
    "dataset": (["run", "--set", "data.sft_dataset=FIFO", "--output", "out/x"], "FIFO: is a FIFO"),
    "constitution": (
        ["run", "--pipeline", "rlaif", "--set", "rlaif.constitution=FIFO", "--output", "out/x"],
        "FIFO is a FIFO",
    ),
}


@pytest.mark.parametrize("case", FIFO_INPUTS)
def test_a_fifo_as_input_is_refused_before_it_is_opened(case, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    os.mkfifo(tmp_path / "FIFO")
    for name, content in MODEL.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(content)
    argv, expected = FIFO_INPUTS[case]
    fails_cleanly(capsys, tmp_path, argv, expected)


def test_a_directory_as_config_is_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "conf").mkdir()
    fails_cleanly(capsys, tmp_path, ["config", "--config", "conf"], "config file conf is a directory, not a file")
