"""The gate stage's one declaration (`kfrlhf.common.spec`): tasks, resources."""

from kfrlhf.common.spec import Resources, StageSpec

SPEC = StageSpec(
    name="gate",
    order=110,
    tasks=(("gate", "Eval gate"),),
    config="kfrlhf.gate.config:GateConfig",
    resources=Resources("500m", "1", "1Gi", "2Gi", gpus=0, timeout_seconds=600),
    image_base="light",
)
