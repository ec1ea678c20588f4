"""The thin KFP wrappers: one lightweight component per stage, each calling `kfrlhf.stages`.

`install_kfp_package=False` and no `packages_to_install`: the stage image already holds the
project and kfp, and `kfp.local.SubprocessRunner` runs the same functions in this Python.
`base_image` names the stage's image; `rlhf compile --registry/--tag` re-points it per task.
Artifacts are directories: datasets hold train/eval JSONL, models hold safetensors.
(No `from __future__ import annotations` here: KFP reads the annotations at decoration time.)
"""


from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Markdown, Metrics, Model, Output

from kfrlhf.pipelines.images import image_for


def _component(stage: str):
    return dsl.component(base_image=image_for(stage), install_kfp_package=False)


@_component("data")
def prepare_data(data: dict, sft_data: Output[Dataset], preference_data: Output[Dataset], prompt_data: Output[Dataset]):
    from kfrlhf.stages import prepare_data

    prepare_data(data, sft_data.path, preference_data.path, prompt_data.path)


@_component("sft")
def sft(sft: dict, report_to: str, sft_data: Input[Dataset], adapter: Output[Model], metrics: Output[Metrics]):
    from kfrlhf.stages import run_sft

    for name, value in run_sft(sft, sft_data.path, adapter.path, report_to).items():
        metrics.log_metric(name, value)


@_component("merge")
def merge(adapter: Input[Model], model: Output[Model]):
    from kfrlhf.stages import run_merge

    run_merge(adapter.path, model.path)


@_component("merge")
def merge_onto(adapter: Input[Model], base_model: Input[Model], model: Output[Model]):
    from kfrlhf.stages import run_merge

    run_merge(adapter.path, model.path, base_dir=base_model.path)


@_component("reward")
def reward(reward: dict, report_to: str, preference_data: Input[Dataset], reward_model: Output[Model],
           metrics: Output[Metrics]):
    from kfrlhf.stages import run_reward

    for name, value in run_reward(reward, preference_data.path, reward_model.path, report_to).items():
        metrics.log_metric(name, value)


@_component("ppo")
def ppo(ppo: dict, report_to: str, sft_model: Input[Model], reward_model: Input[Model], prompt_data: Input[Dataset],
        adapter: Output[Model], metrics: Output[Metrics]):
    from kfrlhf.stages import run_ppo

    for name, value in run_ppo(ppo, sft_model.path, reward_model.path, prompt_data.path, adapter.path, report_to).items():
        if isinstance(value, (int, float)):
            metrics.log_metric(name, value)


@_component("dpo")
def dpo(dpo: dict, report_to: str, sft_model: Input[Model], preference_data: Input[Dataset], adapter: Output[Model],
        metrics: Output[Metrics]):
    from kfrlhf.stages import run_dpo

    for name, value in run_dpo(dpo, sft_model.path, preference_data.path, adapter.path, report_to).items():
        metrics.log_metric(name, value)


@_component("eval")
def evaluate(eval: dict, sft_model: Input[Model], tuned_model: Input[Model], reward_model: Input[Model],
             prompt_data: Input[Dataset], sft_metrics: Input[Metrics], reward_metrics: Input[Metrics],
             report: Output[Dataset], metrics: Output[Metrics], summary: Output[Markdown], plots: Output[HTML]):
    from kfrlhf.stages import run_eval

    upstream = {**sft_metrics.metadata, **reward_metrics.metadata}
    result = run_eval(eval, sft_model.path, tuned_model.path, reward_model.path, prompt_data.path, report.path, upstream)
    for name, value in result.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            metrics.log_metric(name, value)
    with open(summary.path, "w") as f, open(f"{report.path}/report.md") as src:
        f.write(src.read())
    with open(plots.path, "w") as f, open(f"{report.path}/report.html") as src:
        f.write(src.read())
