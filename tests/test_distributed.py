"""Scale-out on a CPU: SFT, reward, DPO and PPO on 2 gloo processes, started by
`kfrlhf.launch.launcher.run_stage` through `accelerate launch` (the path GPUs take), reach what
1 process reaches.

Tolerances. Trained SFT and DPO: relative 1e-4 (each process takes half of every global batch in the
order one process would and DDP averages the gradients: the same update up to float summation order;
measured 1e-7). This caught two defects that made 2 processes drift 2-5% from 1: accelerate left the
model unwrapped (no gradient sync) once `evaluate()` had run before `train()`, and TRL's best-fit
packing let sequences attend across each other. Reward, DPO before training: relative 1e-3. SFT's
eval losses: relative 1e-2: the Trainer reports the mean of per-batch token means, and the eval
stream's last block is shorter, so its weight depends on how a batch is split (0.2% measured). The
models are dropout-free copies of the tiny ones: dropout masks are drawn per process. PPO samples its own
responses on each rank, so whole runs differ by sampling; what must agree is checked directly:
the all-reduced reward moments (1e-9), mean KL (relative 1e-6: float32 inputs), whitening (1e-6)
and divergence verdict, and one SGD update on a fixed rollout split across the ranks (1e-5), with
every rank holding the same weights after it. PPO through the stage: outputs written once, a
checkpoint resumed by both ranks.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from kfrlhf.common import models
from kfrlhf.common.checkpoint import PREEMPTED_EXIT, latest_complete
from kfrlhf.common.data_sources import write_jsonl
from kfrlhf.launch.launcher import call, run_stage
from kfrlhf.pipelines.definitions import run_config as config
from kfrlhf.ppo import losses as L
from kfrlhf.ppo.config import PPOConfig
from kfrlhf.ppo.normalization import RunningMoments
from kfrlhf.ppo.trainer import divergence
from tests import distributed_jobs as jobs
from tests.conftest import preference_rows, sft_rows

REL = {"sft": 1e-2, "reward": 1e-3, "dpo": 1e-3}
TARGETS = {
    "sft": "kfrlhf.sft.stage:run",
    "reward": "kfrlhf.reward.stage:run",
    "dpo": "kfrlhf.dpo.stage:run",
    "ppo": "kfrlhf.ppo.stage:run",
    "grpo": "kfrlhf.grpo.stage:run",
}


def _section(name: str, **kw) -> dict:
    return {**dataclasses.asdict(getattr(config.load_config("tiny"), name)), **kw}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, tiny_lm_dir) -> dict:
    root = tmp_path_factory.mktemp("distributed_inputs")
    rows = sft_rows(40)
    write_jsonl(rows[:32], root / "sft" / "train.jsonl")
    write_jsonl(rows[32:], root / "sft" / "eval.jsonl")
    pairs = preference_rows(48)
    write_jsonl(pairs[:32], root / "pairs" / "train.jsonl")
    write_jsonl(pairs[32:], root / "pairs" / "eval.jsonl")
    write_jsonl([{"prompt": r["prompt"]} for r in pairs], root / "prompts" / "train.jsonl")
    reward = root / "reward" / "model"  # untrained: PPO needs a fixed scorer only
    models.load_reward_model(models.TINY_ENCODER).save_pretrained(reward)
    models.load_tokenizer(models.TINY_ENCODER).save_pretrained(reward)
    lm, encoder = models.load_causal_lm(models.TINY_CAUSAL), models.load_reward_model(models.TINY_ENCODER)
    lm.config.dropout = 0.0
    encoder.config.hidden_dropout_prob = encoder.config.attention_probs_dropout_prob = 0.0
    for name, model, tokenizer in (("lm", lm, models.TINY_CAUSAL), ("encoder", encoder, models.TINY_ENCODER)):
        model.save_pretrained(root / name)
        models.load_tokenizer(tokenizer).save_pretrained(root / name)
    return {"root": root, "lm": str(root / "lm"), "encoder": str(root / "encoder")}


def stage_jobs(inputs: dict, out: Path, ppo_steps: int) -> dict[str, list]:
    root, trainer = inputs["root"], dict(max_steps=4, eval_steps=100, logging_steps=1, save_steps=100, batch_size=4)
    ppo = _section("ppo", steps=ppo_steps, save_every=2, batch_size=4, mini_batch_size=2, ppo_epochs=1)
    ppo.update(min_new_tokens=4, max_new_tokens=6, max_prompt_length=24)
    kwargs = {
        "sft": dict(
            sft=_section("sft", model_name=inputs["lm"], seq_length=32, lora_dropout=0.0, **trainer),
            sft_data=str(root / "sft"),
        ),
        "reward": dict(
            reward=_section("reward", model_name=inputs["encoder"], min_accuracy=0.0, **trainer),
            preference_data=str(root / "pairs"),
        ),
        "dpo": dict(
            dpo=_section("dpo", lora_dropout=0.0, **trainer),
            sft_model=inputs["lm"],
            preference_data=str(root / "pairs"),
        ),
        "ppo": dict(
            ppo=ppo, sft_model=inputs["lm"], reward_model=str(root / "reward"), prompt_data=str(root / "prompts")
        ),
        "grpo": dict(
            grpo=_section("grpo", num_generations=4, max_new_tokens=6, max_prompt_length=24, **trainer),
            sft_model=inputs["lm"],
            reward_model=str(root / "reward"),
            prompt_data=str(root / "prompts"),
        ),
    }
    kwargs["dpo"]["preference_data"] = str(root / "pairs")
    return {name: [TARGETS[name], {**kw, "output_dir": str(out / name)}] for name, kw in kwargs.items()}


@pytest.fixture(scope="module")
def two(inputs, tmp_path_factory) -> dict:
    """Every stage on 2 processes in one launch; PPO then resumed for 2 more steps in a second call, and
    the same 4 steps once more without a stop."""
    out = tmp_path_factory.mktemp("two")
    stages = stage_jobs(inputs, out, ppo_steps=2)
    stages["ppo_resumed"] = stage_jobs(inputs, out, ppo_steps=4)["ppo"]
    stages["ppo_whole"] = stage_jobs(inputs, out / "whole", ppo_steps=4)["ppo"]  # never stopped
    launch = {"distributed": {"processes_per_node": 2}}
    result = run_stage("tests.distributed_jobs:run_all", "launch", {"launch": launch, "stages": stages})
    return {"out": out, **result}


@pytest.fixture(scope="module")
def one(inputs, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("one")
    return {name: call(target, kw) for name, (target, kw) in stage_jobs(inputs, out, ppo_steps=4).items()}


@pytest.mark.parametrize(
    "stage, keys",
    [
        ("sft", ["sft_eval_loss_before", "sft_eval_loss"]),
        ("reward", ["reward_accuracy", "reward_length_correlation"]),
        ("dpo", ["dpo_eval_loss_before"]),
    ],
)
def test_trainer_stages_on_two_processes_match_one(two, one, stage, keys):
    for key in keys:
        assert two[stage][key] == pytest.approx(one[stage][key], rel=REL[stage]), key
    assert (two["out"] / stage / "metrics.json").is_file()


@pytest.mark.parametrize("stage, key", [("sft", "sft_train_loss_last"), ("dpo", "dpo_eval_loss")])
def test_trained_sft_and_dpo_match_one_process(two, one, stage, key):
    assert two[stage][key] == pytest.approx(one[stage][key], rel=1e-4)


def test_grpo_on_two_processes_trains_and_writes_once(two, one):
    """GRPO samples its groups on each rank, so only the run's shape is compared with 1 process."""
    out = two["out"] / "grpo"
    assert set(two["grpo"]) == set(one["grpo"]) and "grpo_reward_last" in two["grpo"]
    assert json.loads((out / "metrics.json").read_text()) == two["grpo"]
    assert (out / "adapter" / "adapter_model.safetensors").is_file() and not list(out.glob(".*.tmp"))


def test_ppo_on_two_processes_writes_once_and_every_rank_resumes(two, one):
    out = two["out"] / "ppo"
    history = json.loads((out / "history.json").read_text())
    assert [h["step"] for h in history] == [1, 2, 3, 4]  # steps 1-2 from the checkpoint both ranks resumed
    assert (out / "adapter" / "adapter_model.safetensors").is_file() and not list(out.glob(".*.tmp"))
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-2", "step-4"]
    assert len(torch.load(out / "checkpoints" / "step-4" / "rng.pt", weights_only=True)["per_rank"]) == 2
    assert two["ppo"]["kl_last"] == pytest.approx(history[1]["kl"])
    assert set(two["ppo_resumed"]) == set(one["ppo"])


def test_sigterm_stops_both_ranks_at_one_checkpoint_and_both_resume(inputs, two, tmp_path):
    """A SIGTERM to the component (what Kubernetes sends a pod it evicts) reaches every rank: they agree
    to stop, write one checkpoint with both ranks' random states and exit 143; started again, they
    resume to the figures of the run that was never stopped (two["ppo_whole"])."""
    target, kwargs = stage_jobs(inputs, tmp_path, ppo_steps=4)["ppo"]
    kwargs["ppo"]["distributed"] = {"processes_per_node": 2}
    out, log = Path(kwargs["output_dir"]), tmp_path / "stderr"
    code = "import json, sys; from kfrlhf.launch.launcher import run_stage; run_stage(*json.loads(sys.argv[1]))"
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, "-c", code, json.dumps([target, "ppo", kwargs])], stderr=err)
        deadline = time.monotonic() + 300
        while latest_complete(out / "checkpoints", "step") is None:
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint within 300 s"
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=300) == PREEMPTED_EXIT, log.read_text()[-3000:]
    assert not (out / "metrics.json").exists(), "the run finished before the signal"
    saved = latest_complete(out / "checkpoints", "step")
    assert len(torch.load(saved / "rng.pt", weights_only=True)["per_rank"]) == 2
    result = run_stage(target, "ppo", kwargs)
    assert [h["step"] for h in json.loads((out / "history.json").read_text())] == [1, 2, 3, 4]
    speeds = {"samples_per_second", "tokens_per_second"}
    expected = {k: v for k, v in two["ppo_whole"].items() if k not in speeds}
    assert {k: v for k, v in result.items() if k not in speeds} == pytest.approx(expected, rel=1e-6)


def test_ppo_statistics_are_all_reduced(two):
    probe, data = two["probe"], jobs.probe_data()
    moments = RunningMoments()
    moments.update(data["scores"])
    moments.update(data["scores"] * 2)
    assert probe["moments"] == pytest.approx([moments.mean, moments.var, moments.count], abs=1e-9)
    assert probe["mean_kl"] == pytest.approx((data["kl"] * data["mask"]).sum(1).mean().item(), rel=1e-6)
    whitened = L.masked_whiten(data["advantages"], data["mask"])
    rank_rows = torch.cat([whitened[0::2], whitened[1::2]])  # the gathered order: rank 0's rows, then rank 1's
    torch.testing.assert_close(torch.tensor(probe["whitened_rows"]), rank_rows, atol=1e-6, rtol=0)
    assert probe["divergence"] == divergence(PPOConfig(reward_limit=0.5), data["scores"], 0.1)
    assert probe["divergence"].startswith("mean reward")


def test_one_ppo_update_split_across_ranks_matches_one_process(two, monkeypatch):
    monkeypatch.setattr(jobs, "share", lambda x: x)
    expected = torch.tensor(jobs.one_update()["weights"])
    got = torch.tensor(two["probe"]["update"]["weights"])
    start = torch.tensor(two["probe"]["update"]["start"])
    assert (expected - start).abs().max() > 1e-3  # the update moved the weights
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    assert two["probe"]["update"]["ranks_agree"]


def test_every_strategy_offered_has_its_config_and_deepspeed_is_not_offered():
    from kfrlhf.common.config import ConfigError, from_dict
    from kfrlhf.launch.config import STRATEGIES, DistributedConfig
    from kfrlhf.launch.launcher import CONFIGS

    assert sorted(p.stem for p in CONFIGS.glob("*.yaml")) == sorted(STRATEGIES)
    with pytest.raises(ConfigError, match="one of ddp, fsdp"):
        from_dict(DistributedConfig, {"strategy": "deepspeed-zero3"}, "ppo.distributed")
