"""The serve stage's KFP component: `promote`, run only when the eval gate passed (`kfrlhf.serve.stage`).

`node_pool` is the pipeline's GPU node pool ({"node_selector", "tolerations"}), a constant that
`rlhf compile` sets from the cluster settings (and an overlay may patch); the InferenceService's
predictor lands there. `run_id` (the pipelines pass the KFP run's id) names the registered version
unless `serve.version` does. The manifest shows in the KFP UI as `summary` (Markdown).
"""

from kfp.dsl import Dataset, Input, Markdown, Output

from kfrlhf.common.component import stage_component


@stage_component
def promote(
    serve: dict,
    report: Input[Dataset],
    node_pool: dict,
    promotion: Output[Dataset],
    summary: Output[Markdown],
    run_id: str,
):
    from pathlib import Path

    from kfrlhf.serve.stage import run

    result = run(serve, report.path, node_pool, promotion.path, run_id)
    manifest = (Path(promotion.path) / "inference_service.yaml").read_text()
    Path(summary.path).write_text(
        f"# Promoted\n\nInferenceService `{result['inference_service']}`, version `{result['version']}`"
        f"{', applied: ' + result['applied'] if 'applied' in result else ''}.\n\n```yaml\n{manifest}```\n"
    )
