"""The ReST pipeline: data -> SFT -> merge -> reward -> I x (Grow -> Improve) -> merge -> eval -> gate [-> promote].

Grow samples `rest.samples_per_prompt` answers per training prompt from the current policy and scores
them with the reward model (a Dataset artifact per iteration, open in the KFP UI); Improve keeps those
above the iteration's rising threshold and fine-tunes the policy's LoRA adapter on them. KFP cannot loop
over a run-time count, so the iterations are unrolled here, in Python, from the `config` the pipeline
is built with (`rlhf run` builds it from the run's config; `rlhf compile --set rest.iterations=N`); each
task gets its `iteration` and the unrolled count as constants and refuses a `rest` parameter whose
`iterations` differs. Parameters and `configure` as in rlhf.py, the head and tail from blocks.py.
(No `from __future__ import annotations`: KFP reads the parameter annotations at decoration time.)
"""

from kfp import dsl
from kfp.dsl import Dataset

from kfrlhf.pipelines.definitions.blocks import evaluate_and_promote, sft_and_reward, stage_hook
from kfrlhf.pipelines.definitions.run_config import RunConfig
from kfrlhf.pipelines.definitions.stages import DISPLAY_NAMES
from kfrlhf.rest.component import rest_grow, rest_improve


def build_rest_pipeline(configure=None, config: RunConfig | None = None):
    config = config or RunConfig()
    defaults, iterations = config.to_dict(), config.rest.iterations
    stage = stage_hook(configure)

    def numbered(task, name: str, i: int):
        stage(task, name).set_display_name(f"{DISPLAY_NAMES[name]} {i + 1}/{iterations}")
        return task

    @dsl.pipeline(
        name="rest",
        description=f"ReST: QLoRA SFT, merge, reward model, {iterations} x (Grow: sample and score; "
        "Improve: filter above a rising threshold, fine-tune), merge, eval",
    )
    def rest(
        data: dict = defaults["data"],
        sft: dict = defaults["sft"],
        reward: dict = defaults["reward"],
        rest: dict = defaults["rest"],
        eval: dict = defaults["eval"],
        gate: dict = defaults["gate"],
        serve: dict = defaults["serve"],
        report_to: str = defaults["report_to"],
    ) -> Dataset:
        head = sft_and_reward(stage, data, sft, reward, report_to)
        sft_model = head["sft_model"]
        adapter = None  # the policy is the SFT model until the first Improve step
        for i in range(iterations):
            grow = rest_grow(
                rest=rest,
                iteration=i,
                iterations=iterations,
                **head.inputs("sft_model", "reward_model", "prompt_data"),
                **({"adapter": adapter} if adapter is not None else {}),
            )
            improve = rest_improve(
                rest=rest,
                iteration=i,
                iterations=iterations,
                report_to=report_to,
                sft_model=sft_model,
                samples=numbered(grow, "rest_grow", i).outputs["samples"],
                **({"previous_adapter": adapter} if adapter is not None else {}),
            )
            adapter = numbered(improve, "rest_improve", i).outputs["adapter"]
        return evaluate_and_promote(stage, head, adapter, "merge_rest", eval, gate, serve)

    return rest
