"""The eval stage's one declaration (`kfrlhf.common.spec`)."""

from kfrlhf.common.spec import Resources, StageSpec

# Sampling from two models and scoring: one GPU, less memory than training.
RESOURCES = Resources("4", "8", "24Gi", "48Gi", timeout_seconds=4 * 3600)
SPEC = StageSpec(name="eval", order=100, tasks=(("eval", "Evaluate (report)"),), resources=RESOURCES, image_base="eval")
