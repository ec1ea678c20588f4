"""The eval stage's KFP component (a thin wrapper around `kfrlhf.eval.stage.run`).

The report directory is the `report` artifact (the pipelines return it); its Markdown and HTML
are also written as `summary` and `plots`, which the KFP UI renders.
"""

from kfp.dsl import HTML, Dataset, Input, Markdown, Metrics, Model, Output

from kfrlhf.common.component import stage_component


@stage_component
def evaluate(
    eval: dict,
    sft_model: Input[Model],
    tuned_model: Input[Model],
    reward_model: Input[Model],
    prompt_data: Input[Dataset],
    sft_metrics: Input[Metrics],
    reward_metrics: Input[Metrics],
    report: Output[Dataset],
    metrics: Output[Metrics],
    summary: Output[Markdown],
    plots: Output[HTML],
    extra_metrics: Input[Metrics] = None,
):
    import shutil

    from kfrlhf.eval.stage import run

    # The models' URIs: what promotion registers and serves, and what `rlhf generate` finds in a run.
    models = {"sft": sft_model.uri, "tuned": tuned_model.uri, "reward": reward_model.uri}
    extra = extra_metrics.metadata if extra_metrics is not None else {}  # e.g. RLAIF's judging
    upstream = {**sft_metrics.metadata, **reward_metrics.metadata, **extra, "models": models}
    result = run(eval, sft_model.path, tuned_model.path, reward_model.path, prompt_data.path, report.path, upstream)
    for name, value in result.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            metrics.log_metric(name, value)
    shutil.copyfile(f"{report.path}/report.md", summary.path)
    shutil.copyfile(f"{report.path}/report.html", plots.path)
