"""The DPO pipeline: data -> SFT -> merge -> DPO -> merge -> eval -> gate [-> promote].

DPO takes the place of reward model + PPO.
DPO learns from the preference pairs directly; the reward model is still trained, but only to
score the eval (tuned vs SFT, the same report as the RLHF pipeline). Parameters and
`configure` as in rlhf.py, the head and tail from blocks.py; the `ppo` section
is not a parameter here.
(No `from __future__ import annotations`: KFP reads the parameter annotations at decoration time.)
"""

from kfp import dsl
from kfp.dsl import Dataset

from kfrlhf.dpo.component import dpo as dpo_component
from kfrlhf.pipelines.definitions.blocks import single_tuner, stage_hook
from kfrlhf.pipelines.definitions.run_config import RunConfig


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
        return single_tuner(stage, locals(), dpo_component, "dpo", ("sft_model", "preference_data"))

    return dpo
