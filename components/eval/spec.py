"""The eval stage's one declaration (`kfrlhf.common.spec`): entry point, tasks, resources."""

from kfrlhf.common.spec import Resources, StageSpec

SPEC = StageSpec(
    name="eval",
    entry="kfrlhf.eval.evaluate:run_eval",
    tasks=(("eval", "Evaluate (report)"),),
    config="kfrlhf.eval.config:EvalConfig",
    resources=Resources("4", "8", "24Gi", "48Gi", timeout_seconds=4 * 3600),
)
