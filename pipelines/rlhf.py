"""The RLHF pipeline: data -> SFT -> merge -> reward -> PPO -> merge -> eval -> gate [-> promote].

Parameters are one dict per stage, keyed by the fields of that stage's config dataclass
(`kfrlhf.<stage>.config`, gathered in `kfrlhf.pipelines.run_config`), with the tutorial-scale
defaults, or those of `config` (`rlhf run` builds the pipeline from the run's config).
`configure(task, stage)` (see platform.py) adds images, GPUs and the rest for a cluster;
the local runner builds the pipeline without it. The SFT/reward head, PPO and the eval, gate and
promotion tail are shared with the DPO and RLAIF pipelines (pipelines/dpo.py, pipelines/rlaif.py).
(No `from __future__ import annotations`: KFP reads the parameter annotations at decoration time.)
"""

from kfp import dsl
from kfp.dsl import Dataset

from kfrlhf.data.component import prepare_data
from kfrlhf.eval.component import evaluate
from kfrlhf.gate.component import gate as gate_component
from kfrlhf.merge.component import merge, merge_onto
from kfrlhf.pipelines.run_config import RunConfig
from kfrlhf.ppo.component import ppo as ppo_component
from kfrlhf.reward.component import reward as reward_component
from kfrlhf.serve.component import promote
from kfrlhf.sft.component import sft as sft_component


def stage_hook(configure):
    """`stage(task, name)`: the task, configured for the cluster when `configure` is given."""

    def stage(task, name):
        if configure:
            configure(task, name)
        return task

    # The cluster's GPU node pool for the promoted model's InferenceService; none locally.
    stage.node_pool = getattr(configure, "node_pool", {})
    return stage


def sft_stages(stage, data: dict, sft: dict, report_to: str) -> dict:
    """data -> SFT -> merge: the tasks, by stage name."""
    prep = stage(prepare_data(data=data), "data")
    sft_task = stage(sft_component(sft=sft, report_to=report_to, sft_data=prep.outputs["sft_data"]), "sft")
    sft_model = stage(merge(adapter=sft_task.outputs["adapter"]), "merge_sft")
    return {"data": prep, "sft": sft_task, "merge_sft": sft_model}


def reward_stage(stage, reward: dict, report_to: str, preference_data):
    """The reward model, trained on `preference_data` (the data stage's pairs, or RLAIF's)."""
    return stage(reward_component(reward=reward, report_to=report_to, preference_data=preference_data), "reward")


def sft_and_reward(stage, data: dict, sft: dict, reward: dict, report_to: str) -> dict:
    """data -> SFT -> merge, and the reward model on the data's pairs: the tasks, by stage name."""
    tasks = sft_stages(stage, data, sft, report_to)
    tasks["reward"] = reward_stage(stage, reward, report_to, tasks["data"].outputs["preference_data"])
    return tasks


def ppo_stage(stage, ppo: dict, report_to: str, tasks: dict):
    """PPO on the merged SFT model against the reward model, on the data's prompts."""
    return stage(
        ppo_component(
            ppo=ppo,
            report_to=report_to,
            sft_model=tasks["merge_sft"].outputs["model"],
            reward_model=tasks["reward"].outputs["reward_model"],
            prompt_data=tasks["data"].outputs["prompt_data"],
        ),
        "ppo",
    )


def merge_and_evaluate(stage, eval: dict, tasks: dict, adapter, merge_name: str, extra_metrics=None):
    """Merge the tuned adapter onto the SFT model; compare tuned and SFT, scored by the reward model.
    `extra_metrics`: another stage's metrics for the report (RLAIF's judging)."""
    sft_model, reward_task = tasks["merge_sft"].outputs["model"], tasks["reward"]
    tuned = stage(merge_onto(adapter=adapter, base_model=sft_model), merge_name)
    return stage(
        evaluate(
            eval=eval,
            sft_model=sft_model,
            tuned_model=tuned.outputs["model"],
            reward_model=reward_task.outputs["reward_model"],
            prompt_data=tasks["data"].outputs["prompt_data"],
            sft_metrics=tasks["sft"].outputs["metrics"],
            reward_metrics=reward_task.outputs["metrics"],
            **({"extra_metrics": extra_metrics} if extra_metrics is not None else {}),
        ),
        "eval",
    )


def gate_and_promote(stage, gate: dict, serve: dict, eval_task):
    """The eval gate, then promotion (Model Registry, KServe) only when it passed; returns the gated report."""
    gate_task = stage(gate_component(gate=gate, eval_report=eval_task.outputs["report"]), "gate")
    with dsl.If(gate_task.outputs["Output"] == "passed", name="eval-gate-passed"):
        report, run_id = gate_task.outputs["report"], dsl.PIPELINE_JOB_ID_PLACEHOLDER
        task = stage(promote(serve=serve, report=report, node_pool=stage.node_pool, run_id=run_id), "promote")
        task.set_caching_options(False)  # registering and deploying are side effects: every run does them
    return gate_task.outputs["report"]


def build_rlhf_pipeline(configure=None, config: RunConfig | None = None):
    defaults = (config or RunConfig()).to_dict()
    stage = stage_hook(configure)

    @dsl.pipeline(name="rlhf", description="RLHF: QLoRA SFT, merge, reward model, PPO with adaptive KL, merge, eval")
    def rlhf(
        data: dict = defaults["data"],
        sft: dict = defaults["sft"],
        reward: dict = defaults["reward"],
        ppo: dict = defaults["ppo"],
        eval: dict = defaults["eval"],
        gate: dict = defaults["gate"],
        serve: dict = defaults["serve"],
        report_to: str = defaults["report_to"],
    ) -> Dataset:
        tasks = sft_and_reward(stage, data, sft, reward, report_to)
        ppo_task = ppo_stage(stage, ppo, report_to, tasks)
        eval_task = merge_and_evaluate(stage, eval, tasks, ppo_task.outputs["adapter"], "merge_ppo")
        return gate_and_promote(stage, gate, serve, eval_task)

    return rlhf
