"""The RLHF pipeline: data -> SFT -> merge -> reward -> PPO -> merge -> eval -> gate [-> promote].

Parameters are one dict per stage, keyed by the fields of that stage's config dataclass
(`kfrlhf.<stage>.config`, gathered in `kfrlhf.pipelines.definitions.run_config`), with the tutorial-scale
defaults, or those of `config` (`rlhf run` builds the pipeline from the run's config).
`configure(task, stage)` (see platform.py) adds images, GPUs and the rest for a cluster;
the local runner builds the pipeline without it. The head (data, SFT, merge, reward) and the tail
(merge, eval, gate, promotion) are the building blocks of blocks.py, shared by every pipeline.
(No `from __future__ import annotations`: KFP reads the parameter annotations at decoration time.)
"""

from kfp import dsl
from kfp.dsl import Dataset

from kfrlhf.pipelines.definitions.blocks import single_tuner, stage_hook
from kfrlhf.pipelines.definitions.run_config import RunConfig
from kfrlhf.ppo.component import ppo as ppo_component


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
        return single_tuner(stage, locals(), ppo_component, "ppo", ("sft_model", "reward_model", "prompt_data"))

    return rlhf
