"""The serve stage's one declaration (`kfrlhf.common.spec`): tasks, resources."""

from kfrlhf.common.spec import Resources, StageSpec

SPEC = StageSpec(
    name="serve",
    order=120,
    tasks=(("promote", "Promote (Model Registry, KServe)"),),
    config="kfrlhf.serve.config:ServeConfig",
    resources=Resources("500m", "1", "1Gi", "2Gi", gpus=0, timeout_seconds=1800),
    image_base="cluster",
)
