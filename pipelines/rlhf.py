"""The RLHF pipeline: data -> SFT -> merge -> reward -> PPO -> merge -> eval.

Parameters are one dict per stage, keyed by the fields of that stage's config dataclass
(`kfrlhf.config`), with the tutorial-scale defaults; `rlhf run` passes the tiny preset.
`configure(task, stage)` (see platform.py) adds images, GPUs and the rest for a cluster;
the local runner builds the pipeline without it. (No `from __future__ import annotations`:
KFP reads the parameter annotations at decoration time.)
"""


from kfp import dsl

from kfrlhf import kfp_components as c
from kfrlhf.config import RunConfig


def build_rlhf_pipeline(configure=None):
    defaults = RunConfig().to_dict()

    def stage(task, name):
        if configure:
            configure(task, name)
        return task

    @dsl.pipeline(name="rlhf", description="RLHF: QLoRA SFT, merge, reward model, PPO with adaptive KL, merge, eval")
    def rlhf(
        data: dict = defaults["data"],
        sft: dict = defaults["sft"],
        reward: dict = defaults["reward"],
        ppo: dict = defaults["ppo"],
        eval: dict = defaults["eval"],
        report_to: str = defaults["report_to"],
    ):
        prep = stage(c.prepare_data(data=data), "data")
        sft_task = stage(c.sft(sft=sft, report_to=report_to, sft_data=prep.outputs["sft_data"]), "sft")
        sft_model = stage(c.merge(adapter=sft_task.outputs["adapter"]), "merge_sft")
        reward_task = stage(
            c.reward(reward=reward, report_to=report_to, preference_data=prep.outputs["preference_data"]), "reward"
        )
        ppo_task = stage(
            c.ppo(ppo=ppo, report_to=report_to, sft_model=sft_model.outputs["model"],
                  reward_model=reward_task.outputs["reward_model"], prompt_data=prep.outputs["prompt_data"]),
            "ppo",
        )
        tuned = stage(c.merge_onto(adapter=ppo_task.outputs["adapter"], base_model=sft_model.outputs["model"]), "merge_ppo")
        stage(
            c.evaluate(eval=eval, sft_model=sft_model.outputs["model"], tuned_model=tuned.outputs["model"],
                       reward_model=reward_task.outputs["reward_model"], prompt_data=prep.outputs["prompt_data"],
                       sft_metrics=sft_task.outputs["metrics"], reward_metrics=reward_task.outputs["metrics"]),
            "eval",
        )

    return rlhf
