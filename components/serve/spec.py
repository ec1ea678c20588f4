"""The serve stage's one declaration (`kfrlhf.common.spec`): entry point, tasks, resources."""

from kfrlhf.common.spec import Resources, StageSpec

SPEC = StageSpec(
    name="serve",
    entry="kfrlhf.serve.promote:promote",
    tasks=(("promote", "Promote (Model Registry, KServe)"),),
    config="kfrlhf.serve.config:ServeConfig",
    resources=Resources("500m", "1", "1Gi", "2Gi", gpus=0, timeout_seconds=1800),
)
