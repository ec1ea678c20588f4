"""The DPO pipeline: data -> SFT -> merge -> DPO -> merge -> eval -> gate [-> promote].

DPO takes the place of reward model + PPO.
DPO learns from the preference pairs directly; the reward model is still trained, but only to
score the eval (tuned vs SFT, the same report as the RLHF pipeline). Parameters and
`configure` as in pipelines/rlhf.py; the `ppo` section is not a parameter here.
(No `from __future__ import annotations`: KFP reads the parameter annotations at decoration time.)
"""

from kfp import dsl
from kfp.dsl import Dataset

from kfrlhf.dpo.component import dpo_train
from kfrlhf.pipelines.rlhf import gate_and_promote, merge_and_evaluate, sft_and_reward, stage_hook
from kfrlhf.pipelines.run_config import RunConfig


def build_dpo_pipeline(configure=None, config: RunConfig | None = None):
    defaults = (config or RunConfig()).to_dict()
    stage = stage_hook(configure)

    @dsl.pipeline(
        name="dpo",
        description="DPO: QLoRA SFT, merge, DPO (LoRA, reference = SFT), merge, eval scored by a reward model",
    )
    def dpo(
        data: dict = defaults["data"],
        sft: dict = defaults["sft"],
        reward: dict = defaults["reward"],
        dpo: dict = defaults["dpo"],
        eval: dict = defaults["eval"],
        gate: dict = defaults["gate"],
        serve: dict = defaults["serve"],
        report_to: str = defaults["report_to"],
    ) -> Dataset:
        tasks = sft_and_reward(stage, data, sft, reward, report_to)
        dpo_task = stage(
            dpo_train(
                dpo=dpo,
                report_to=report_to,
                sft_model=tasks["merge_sft"].outputs["model"],
                preference_data=tasks["data"].outputs["preference_data"],
            ),
            "dpo",
        )
        eval_task = merge_and_evaluate(stage, eval, tasks, dpo_task.outputs["adapter"], "merge_dpo")
        return gate_and_promote(stage, gate, serve, eval_task)

    return dpo
