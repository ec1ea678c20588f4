"""The GRPO pipeline: data -> SFT -> merge -> reward -> GRPO -> merge -> eval -> gate [-> promote].

GRPO takes PPO's place: TRL's GRPOTrainer, a LoRA adapter on the SFT model, the reward model as its
reward function and each prompt's group of answers as the baseline (no value model). Parameters and
`configure` as in rlhf.py, the head and tail from blocks.py.
(No `from __future__ import annotations`: KFP reads the parameter annotations at decoration time.)
"""

from kfp import dsl
from kfp.dsl import Dataset

from kfrlhf.grpo.component import grpo as grpo_component
from kfrlhf.pipelines.definitions.blocks import single_tuner, stage_hook
from kfrlhf.pipelines.definitions.run_config import RunConfig


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
        return single_tuner(stage, locals(), grpo_component, "grpo", ("sft_model", "reward_model", "prompt_data"))

    return grpo
