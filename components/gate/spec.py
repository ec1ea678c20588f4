"""The gate stage's one declaration (`kfrlhf.common.spec`)."""

from kfrlhf.common.spec import Resources, StageSpec

# A small CPU-only pod: the gate reads the eval report.
RESOURCES = Resources("500m", "1", "1Gi", "2Gi", gpus=0, timeout_seconds=600)
SPEC = StageSpec(name="gate", order=110, tasks=(("gate", "Eval gate"),), resources=RESOURCES, image_base="light")
