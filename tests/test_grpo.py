"""GRPO: the trainer we build from our config gives each answer its group-relative advantage (hand-made
rewards), the reward function scores answers cut at the stop string, the config refuses partial groups;
and the GRPO pipeline end to end through kfp.local."""

import json
import math
from pathlib import Path

import pytest
import torch

from kfrlhf.common.config import ConfigError
from kfrlhf.grpo.config import GRPOConfig
from kfrlhf.grpo.stage import grpo_trainer, reward_function
from kfrlhf.pipelines.cli import GATE_REFUSED, main
from tests.test_pipeline import FAST

PROMPTS = ["Question: How do I bake bread?\n\nAnswer: ", "Question: What is tea?\n\nAnswer: "]
REWARDS = [1.0, 2.0, 3.0, 4.0, 5.0, 5.0, 5.0, 5.0]  # in the order TRL asks: group by group


@pytest.mark.parametrize("scale", ["group", "none"])
def test_group_advantages_on_hand_made_rewards(tiny_lm_dir, tmp_path, scale):
    cfg = GRPOConfig(
        num_generations=4, batch_size=8, max_new_tokens=4, scale_rewards=scale, max_steps=1,
        gradient_checkpointing=False, bf16=False,
    )  # fmt: skip

    def hand_made(prompts, completions, **kwargs):
        return REWARDS[: len(completions)]

    trainer = grpo_trainer(cfg, str(tiny_lm_dir), PROMPTS, hand_made, tmp_path, "none")
    batch = next(iter(trainer.get_train_dataloader()))
    groups = [[row["prompt"] for row in batch[i : i + 4]] for i in (0, 4)]
    assert all(len(set(g)) == 1 for g in groups) and {g[0] for g in groups} == set(PROMPTS)  # a group: one prompt
    trainer.model.train()
    advantages = trainer._generate_and_score_completions(batch)["advantages"]
    # Group 1: rewards 1..4, mean 2.5, sample std sqrt(5/3); group 2: all equal, no signal.
    centred = torch.tensor([-1.5, -0.5, 0.5, 1.5, 0.0, 0.0, 0.0, 0.0])
    expected = centred / (math.sqrt(5 / 3) + 1e-4) if scale == "group" else centred
    assert torch.allclose(advantages.cpu(), expected, atol=1e-4)  # TRL's device: the GPU where there is one


def test_the_reward_function_scores_answers_cut_at_the_stop_string():
    seen = []

    def scorer(prompts, answers):
        seen.extend(answers)
        return torch.tensor([float(len(a)) for a in answers])

    reward = reward_function(scorer, ["\n\nHuman:"])
    assert reward(["q", "q"], ["Bake it.\n\nHuman: more", "Tea."]) == [8.0, 4.0]
    assert seen == ["Bake it.", "Tea."]


def test_partial_groups_are_refused():
    with pytest.raises(ConfigError, match=r"must be a multiple of grpo.num_generations \(8\)"):
        GRPOConfig(num_generations=8, batch_size=12)
    with pytest.raises(ConfigError, match="grpo.num_generations must be >= 2"):
        GRPOConfig(num_generations=1, batch_size=8)
    with pytest.raises(ConfigError, match="grpo.scale_rewards must be one of group, batch, none"):
        GRPOConfig(scale_rewards="yes")


def test_grpo_run_through_kfp_local(tmp_path):
    out = tmp_path / "run"
    grpo = ["max_steps=2", "batch_size=8", "num_generations=4", "logging_steps=1", "save_steps=2"]
    args = ["run", "--pipeline", "grpo", "--output", str(out), "--report-to", "none"]
    for item in FAST + [f"grpo.{g}" for g in grpo]:
        args += ["--set", item]
    code = main(args)
    report = json.loads((out / "report.json").read_text())
    assert code == (0 if report["gate"]["passed"] else GATE_REFUSED)
    assert report["pipeline"] == "grpo" and "grpo" in report["stage_times_s"]
    for key in ("reward_before", "reward_after", "kl", "win_rate"):
        assert math.isfinite(report[key]), key
    root = out / "pipeline_root"
    (metrics,) = [p for p in root.rglob("metrics.json") if "grpo_reward_first" in p.read_text()]
    assert Path(metrics.parent / "adapter" / "adapter_model.safetensors").exists()
    assert not list(root.rglob("history.json"))  # no PPO task ran
