"""The gate stage's one declaration (`kfrlhf.common.spec`): entry point, tasks, resources."""

from kfrlhf.common.spec import Resources, StageSpec

SPEC = StageSpec(
    name="gate",
    entry="kfrlhf.gate.gate:run_gate",
    tasks=(("gate", "Eval gate"),),
    config="kfrlhf.gate.config:GateConfig",
    resources=Resources("500m", "1", "1Gi", "2Gi", gpus=0, timeout_seconds=600),
)
