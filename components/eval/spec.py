"""The eval stage's one declaration (`kfrlhf.common.spec`): tasks, resources."""

from kfrlhf.common.spec import Resources, StageSpec

SPEC = StageSpec(
    name="eval",
    order=100,
    tasks=(("eval", "Evaluate (report)"),),
    config="kfrlhf.eval.config:EvalConfig",
    resources=Resources("4", "8", "24Gi", "48Gi", timeout_seconds=4 * 3600),
    image_base="eval",
)
