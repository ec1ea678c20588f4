"""`rlhf run` stopped by SIGTERM during PPO says how to resume, and the same command again resumes PPO."""

import json
import os
import re
import signal
import subprocess
import sys
import time

from kfrlhf.pipelines.cli import GATE_REFUSED
from tests.test_pipeline import FAST

CMD = [sys.executable, "-m", "kfrlhf.pipelines.cli", "run", "--report-to", "none"]
SLOW_PPO = ["ppo.steps=40", "ppo.save_every=2"]  # long enough that SIGTERM lands mid-PPO (~2 steps/s)


def _args(out):
    args = CMD + ["--output", str(out)]
    for item in FAST + SLOW_PPO:
        args += ["--set", item]
    return args


def test_rerun_resumes_the_interrupted_stage(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(_args(out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not list(out.glob("checkpoints/*/ppo/adapter/step-*/COMPLETE")):
        assert proc.poll() is None, "the run ended before PPO saved a checkpoint"
        assert time.time() < deadline, "no PPO checkpoint within 5 minutes"
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGTERM)  # the CLI only: it forwards the signal to the running task
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, err
    last = err.strip().splitlines()[-1]
    assert re.match(r"rlhf run: stopped by SIGTERM during \[\d/9\] ppo; to resume, run the same", last), last
    assert not (out / "report.json").exists()

    rerun = subprocess.run(_args(out), capture_output=True, text=True, timeout=600)
    assert rerun.returncode in (0, GATE_REFUSED), rerun.stderr[-2000:]  # ran to the end; its gate is not the subject
    assert "PPO: resuming from" in (out / "logs" / "ppo.log").read_text()
    assert re.search(r"\[\d/9\] ppo +done in \d+ s \(resumed from step-\d+\)", rerun.stdout), rerun.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["num_prompts"] == 8
    # Finished stages drop their checkpoints.
    assert not [p for p in out.glob("checkpoints/*/*/*/*") if p.is_dir()]
