"""The GRPO pipeline: data -> SFT -> merge -> reward -> GRPO -> merge -> eval -> gate [-> promote].

GRPO takes PPO's place: TRL's GRPOTrainer, a LoRA adapter on the SFT model, the reward model as its
reward function and each prompt's group of answers as the baseline (no value model). Parameters,
`configure` and the shared head and tail as in pipelines/rlhf.py.
(No `from __future__ import annotations`: KFP reads the parameter annotations at decoration time.)
"""

from kfp import dsl
from kfp.dsl import Dataset

from kfrlhf.grpo.component import grpo_train
from kfrlhf.pipelines.rlhf import gate_and_promote, merge_and_evaluate, sft_and_reward, stage_hook
from kfrlhf.pipelines.run_config import RunConfig


def build_grpo_pipeline(configure=None, config: RunConfig | None = None):
    defaults = (config or RunConfig()).to_dict()
    stage = stage_hook(configure)

    @dsl.pipeline(
        name="grpo",
        description="GRPO: QLoRA SFT, merge, reward model, GRPO (LoRA, group-relative advantages), merge, eval",
    )
    def grpo(
        data: dict = defaults["data"],
        sft: dict = defaults["sft"],
        reward: dict = defaults["reward"],
        grpo: dict = defaults["grpo"],
        eval: dict = defaults["eval"],
        gate: dict = defaults["gate"],
        serve: dict = defaults["serve"],
        report_to: str = defaults["report_to"],
    ) -> Dataset:
        tasks = sft_and_reward(stage, data, sft, reward, report_to)
        grpo_task = stage(
            grpo_train(
                grpo=grpo,
                report_to=report_to,
                sft_model=tasks["merge_sft"].outputs["model"],
                reward_model=tasks["reward"].outputs["reward_model"],
                prompt_data=tasks["data"].outputs["prompt_data"],
            ),
            "grpo",
        )
        eval_task = merge_and_evaluate(stage, eval, tasks, grpo_task.outputs["adapter"], "merge_grpo")
        return gate_and_promote(stage, gate, serve, eval_task)

    return grpo
