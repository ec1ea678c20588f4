"""The RLAIF pipeline: data -> SFT -> merge -> RLAIF labels -> reward -> PPO -> merge -> eval -> gate [-> promote].

RLAIF replaces the human preference pairs: the merged SFT model answers the prompts twice, an AI
judge labels each pair against the constitution in both orders (`kfrlhf.rlaif`), and the reward
model trains on the consistent verdicts; PPO, eval, gate and promotion are the RLHF pipeline's.
The data stage's own preference pairs are not used. The report carries the judging's metrics
(agreement rate, dropped pairs). Parameters and `configure` as in rlhf.py, the head and tail
from blocks.py; the `dpo` section is not a parameter here.
(No `from __future__ import annotations`: KFP reads the parameter annotations at decoration time.)
"""

from kfp import dsl
from kfp.dsl import Dataset

from kfrlhf.pipelines.definitions.blocks import add_reward, evaluate_and_promote, sft_head, stage_hook
from kfrlhf.pipelines.definitions.run_config import RunConfig
from kfrlhf.ppo.component import ppo as ppo_component
from kfrlhf.rlaif.component import rlaif as rlaif_component


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
        head = sft_head(stage, data, sft, report_to)
        labels = stage(rlaif_component(rlaif=rlaif, **head.inputs("sft_model", "prompt_data")), "rlaif")
        add_reward(stage, head, reward, report_to, preference_data=labels.outputs["preference_data"])
        policy = ppo_component(ppo=ppo, report_to=report_to, **head.inputs("sft_model", "reward_model", "prompt_data"))
        adapter, judging = stage(policy, "ppo").outputs["adapter"], labels.outputs["metrics"]
        return evaluate_and_promote(stage, head, adapter, "merge_ppo", eval, gate, serve, extra_metrics=judging)

    return rlaif
