"""Resume: SFT and PPO killed mid-run (SIGKILL, SIGTERM) and started again on the same output
reach the uninterrupted seeded run's final metrics; a truncated checkpoint is skipped.

Tolerance: relative 1e-6 (on CPU with one thread the resumed runs match bit for bit; the
margin only absorbs float formatting). One exception, by design: the logged SFT train loss
of the logging interval cut by a SIGTERM averages fewer steps (HF Trainer restarts its loss
sum at the checkpoint), so the stop lands well before the last interval compared here.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from kfrlhf.common import models
from kfrlhf.common.checkpoint import MANIFEST, PREEMPTED_EXIT, CheckpointMismatch, latest_complete
from kfrlhf.common.data_sources import write_jsonl
from kfrlhf.pipelines.definitions import run_config as config
from tests.conftest import preference_rows, sft_rows

# Stage entry points, the way the KFP components call them.
ENTRY = {"run_sft": "kfrlhf.sft.stage", "run_ppo_stage": "kfrlhf.ppo.stage"}
RUN = (
    "import importlib, json, sys; getattr(importlib.import_module(sys.argv[1]), sys.argv[2])(**json.loads(sys.argv[3]))"
)
PREFIX = {"run_sft": "checkpoint", "run_ppo_stage": "step"}
TOL = dict(rel=1e-6, abs=1e-9)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The same thread count in every run (float sums depend on it); also far faster on 2 shared cores."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _section(name: str, **kw) -> dict:
    return {**dataclasses.asdict(getattr(config.load_config("tiny"), name)), **kw}


@pytest.fixture(scope="module")
def jobs(tmp_path_factory, tiny_lm_dir) -> dict:
    """Keyword arguments of run_sft / run_ppo_stage (output_dir added per run)."""
    root = tmp_path_factory.mktemp("resume_inputs")
    rows = sft_rows(200)
    write_jsonl(rows[:180], root / "sft" / "train.jsonl")
    write_jsonl(rows[180:], root / "sft" / "eval.jsonl")
    write_jsonl([{"prompt": r["prompt"]} for r in preference_rows(64)], root / "prompts" / "train.jsonl")
    reward = root / "reward" / "model"  # untrained: any fixed scorer will do for resume
    models.load_reward_model(models.TINY_ENCODER).save_pretrained(reward)
    models.load_tokenizer(models.TINY_ENCODER).save_pretrained(reward)
    sft = _section("sft", max_steps=40, save_steps=4, logging_steps=2, eval_steps=100, seq_length=64, batch_size=4)
    ppo = _section(
        "ppo", steps=10, save_every=2, batch_size=8, mini_batch_size=4, ppo_epochs=1, min_new_tokens=4, max_new_tokens=8
    )
    return {
        "run_sft": dict(sft=sft, sft_data=str(root / "sft")),
        "run_ppo_stage": dict(
            ppo=ppo, sft_model=str(tiny_lm_dir), reward_model=str(root / "reward"), prompt_data=str(root / "prompts")
        ),
    }


def run(stage: str, kwargs: dict, out: Path) -> dict:
    return importlib.import_module(ENTRY[stage]).run(**kwargs, output_dir=str(out))


def final(stage: str, out: Path) -> dict:
    """What must match: the metrics, and for PPO every step's metrics but its wall-clock speed."""
    drop = {"samples_per_second", "tokens_per_second"}
    result = {k: v for k, v in json.loads((out / "metrics.json").read_text()).items() if k not in drop}
    if stage == "run_ppo_stage":
        for h in json.loads((out / "history.json").read_text()):
            result.update({f"step {h['step']} {k}": v for k, v in h.items() if k not in drop and k[:5] != "time_"})
    return result


@pytest.fixture(scope="module")
def reference(jobs, tmp_path_factory) -> dict:
    outs = {stage: tmp_path_factory.mktemp(f"reference_{stage}") for stage in jobs}
    for stage, out in outs.items():
        run(stage, jobs[stage], out)
    return {stage: (out, final(stage, out)) for stage, out in outs.items()}


def interrupt(stage: str, kwargs: dict, out: Path, sig: int) -> tuple[int, str]:
    """Start the stage in a subprocess, send `sig` once its first checkpoint is complete."""
    log = out.parent / f"{out.name}.stderr"
    with open(log, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", RUN, ENTRY[stage], "run", json.dumps(dict(kwargs, output_dir=str(out)))],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=dict(os.environ, OMP_NUM_THREADS="1"),
        )
        deadline = time.monotonic() + 180
        while latest_complete(out / "checkpoints", PREFIX[stage]) is None:
            assert proc.poll() is None, f"{stage} ended before its first checkpoint:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, "no checkpoint within 180 s"
            time.sleep(0.02)
        proc.send_signal(sig)
        rc = proc.wait(timeout=180)
    return rc, log.read_text()


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
@pytest.mark.parametrize("stage", ["run_sft", "run_ppo_stage"])
def test_killed_run_resumes_to_the_same_metrics(stage, sig, jobs, reference, tmp_path):
    out = tmp_path / "out"
    rc, stderr = interrupt(stage, jobs[stage], out, sig)
    assert not (out / "metrics.json").exists(), "the run finished before the signal: give it more steps"
    if sig == signal.SIGKILL:
        assert rc == -signal.SIGKILL
    else:
        assert rc == PREEMPTED_EXIT, stderr[-3000:]
        saved = latest_complete(out / "checkpoints", PREFIX[stage])
        assert f"stopped by SIGTERM after step {saved.name.split('-')[1]}; checkpoint: {saved}" in stderr
    run(stage, jobs[stage], out)
    assert final(stage, out) == pytest.approx(reference[stage][1], **TOL)


@pytest.mark.parametrize("damage", ["truncated", "missing", "no manifest"])
@pytest.mark.parametrize("stage", ["run_sft", "run_ppo_stage"])
def test_damaged_newest_checkpoint_is_skipped(stage, damage, jobs, reference, tmp_path):
    ref_out, ref_metrics = reference[stage]
    ckpts = tmp_path / "out" / "checkpoints"
    shutil.copytree(ref_out / "checkpoints", ckpts)
    newest = latest_complete(ckpts, PREFIX[stage])
    victim = max((p for p in newest.rglob("*") if p.is_file() and p.name != MANIFEST), key=lambda p: p.stat().st_size)
    if damage == "truncated":  # a kill mid-write: the file is cut short, the manifest says otherwise
        victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    else:
        (victim if damage == "missing" else newest / MANIFEST).unlink()
    previous = latest_complete(ckpts, PREFIX[stage])
    assert previous is not None and previous != newest
    run(stage, jobs[stage], tmp_path / "out")
    assert final(stage, tmp_path / "out") == pytest.approx(ref_metrics, **TOL)
    assert latest_complete(ckpts, PREFIX[stage]) == newest  # saved again, complete this time


CHANGES = [("run_sft", "sft", "lora_r", 8, "save_steps"), ("run_ppo_stage", "ppo", "init_kl_coef", 0.5, "save_every")]


@pytest.mark.parametrize("stage, section, key, value, safe", CHANGES)
def test_checkpoint_of_another_config_is_refused(stage, section, key, value, safe, jobs, reference, tmp_path):
    """A task retried with changed parameters must not continue the old run's checkpoint."""
    shutil.copytree(reference[stage][0] / "checkpoints", tmp_path / "out" / "checkpoints")

    def changed(**kw):
        return dict(jobs[stage], **{section: dict(jobs[stage][section], **kw)})

    name = section.upper()
    with pytest.raises(CheckpointMismatch, match=rf"^{name}: checkpoint .+ under a different config \({key} changed\)"):
        run(stage, changed(**{key: value}), tmp_path / "out")
    run(stage, changed(**{safe: 3}), tmp_path / "out")  # how often to save is no different run


def test_checkpoints_go_to_the_pvc_root_on_a_cluster(tmp_path, monkeypatch):
    """A pod's output artifact is local until success: with RLHF_CHECKPOINT_ROOT the checkpoints
    live on the PVC under the artifact's path (the same on a retry) and go away after success."""
    from kfrlhf.common.checkpoint import CHECKPOINT_ROOT_ENV, checkpoint_root, release_checkpoints

    out = tmp_path / "minio" / "run-1" / "sft" / "adapter"
    assert checkpoint_root(out) == out / "checkpoints"
    release_checkpoints(out)  # no external root: nothing to drop
    monkeypatch.setenv(CHECKPOINT_ROOT_ENV, str(tmp_path / "pvc"))
    root = checkpoint_root(out)
    assert root == tmp_path / "pvc" / out.resolve().relative_to("/")
    root.mkdir(parents=True)
    release_checkpoints(out)
    assert not root.exists()
