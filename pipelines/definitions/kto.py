"""The KTO pipeline: data -> SFT -> merge -> KTO -> merge -> eval -> gate [-> promote].

KTO takes the place of reward model + PPO, as DPO does, but learns from unpaired answers labelled desirable
or undesirable (here each preference pair's chosen and rejected answer); the reward model is still trained,
but only to score the eval. Parameters and `configure` as in rlhf.py, the head and tail from blocks.py.
(No `from __future__ import annotations`: KFP reads the parameter annotations at decoration time.)
"""

from kfp import dsl
from kfp.dsl import Dataset

from kfrlhf.kto.component import kto as kto_component
from kfrlhf.pipelines.definitions.blocks import single_tuner, stage_hook
from kfrlhf.pipelines.definitions.run_config import RunConfig


def build_kto_pipeline(configure=None, config: RunConfig | None = None):
    defaults = (config or RunConfig()).to_dict()
    stage = stage_hook(configure)

    @dsl.pipeline(
        name="kto",
        description="KTO: QLoRA SFT, merge, KTO (LoRA, unpaired desirable/undesirable answers, reference = SFT), "
        "merge, eval scored by a reward model",
    )
    def kto(
        data: dict = defaults["data"],
        sft: dict = defaults["sft"],
        reward: dict = defaults["reward"],
        kto: dict = defaults["kto"],
        eval: dict = defaults["eval"],
        gate: dict = defaults["gate"],
        serve: dict = defaults["serve"],
        report_to: str = defaults["report_to"],
    ) -> Dataset:
        return single_tuner(stage, locals(), kto_component, "kto", ("sft_model", "preference_data"))

    return kto
