"""The eval gate's KFP component (a thin wrapper around `kfrlhf.gate.stage.run`).

Returns "passed" or "failed", on which the pipelines' `dsl.If` runs promotion. The gated report is
`report` (what the pipelines return); the decision shows in the KFP UI as `summary` (Markdown) and
`metrics` (gate_passed 1/0, one 1/0 per check).
"""

from kfp.dsl import Dataset, Input, Markdown, Metrics, Output

from kfrlhf.common.component import stage_component


@stage_component
def gate(
    gate: dict,
    eval_report: Input[Dataset],
    report: Output[Dataset],
    metrics: Output[Metrics],
    summary: Output[Markdown],
) -> str:
    import shutil

    from kfrlhf.gate.stage import run

    decision = run(gate, eval_report.path, report.path)
    metrics.log_metric("gate_passed", float(decision["passed"]))
    for check in decision["checks"]:
        metrics.log_metric(f"gate_{check['name']}", float(check["passed"]))
    shutil.copyfile(f"{report.path}/report.md", summary.path)
    return "passed" if decision["passed"] else "failed"
