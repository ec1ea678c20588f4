"""The RLAIF pipeline: data -> SFT -> merge -> RLAIF labels -> reward -> PPO -> merge -> eval -> gate [-> promote].

RLAIF replaces the human preference pairs: the merged SFT model answers the prompts twice, an AI
judge labels each pair against the constitution in both orders (`kfrlhf.rlaif`), and the reward
model trains on the consistent verdicts; PPO, eval, gate and promotion are the RLHF pipeline's.
The data stage's own preference pairs are not used. The report carries the judging's metrics
(agreement rate, dropped pairs). Parameters and `configure` as in pipelines/rlhf.py; the `dpo`
section is not a parameter here.
(No `from __future__ import annotations`: KFP reads the parameter annotations at decoration time.)
"""

from kfp import dsl
from kfp.dsl import Dataset

from kfrlhf.pipelines.rlhf import gate_and_promote, merge_and_evaluate, ppo_stage, reward_stage, sft_stages, stage_hook
from kfrlhf.pipelines.run_config import RunConfig
from kfrlhf.rlaif.component import rlaif_label


def build_rlaif_pipeline(configure=None, config: RunConfig | None = None):
    defaults = (config or RunConfig()).to_dict()
    stage = stage_hook(configure)

    @dsl.pipeline(
        name="rlaif",
        description="RLAIF: QLoRA SFT, merge, AI-judged answer pairs (constitution), reward model, PPO, merge, eval",
    )
    def rlaif(
        data: dict = defaults["data"],
        sft: dict = defaults["sft"],
        rlaif: dict = defaults["rlaif"],
        reward: dict = defaults["reward"],
        ppo: dict = defaults["ppo"],
        eval: dict = defaults["eval"],
        gate: dict = defaults["gate"],
        serve: dict = defaults["serve"],
        report_to: str = defaults["report_to"],
    ) -> Dataset:
        tasks = sft_stages(stage, data, sft, report_to)
        sft_model, prompt_data = tasks["merge_sft"].outputs["model"], tasks["data"].outputs["prompt_data"]
        labels = stage(rlaif_label(rlaif=rlaif, sft_model=sft_model, prompt_data=prompt_data), "rlaif")
        tasks["reward"] = reward_stage(stage, reward, report_to, labels.outputs["preference_data"])
        ppo_task = ppo_stage(stage, ppo, report_to, tasks)
        eval_task = merge_and_evaluate(
            stage, eval, tasks, ppo_task.outputs["adapter"], "merge_ppo", extra_metrics=labels.outputs["metrics"]
        )
        return gate_and_promote(stage, gate, serve, eval_task)

    return rlaif
