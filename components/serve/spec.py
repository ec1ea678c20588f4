"""The serve stage's one declaration (`kfrlhf.common.spec`)."""

from kfrlhf.common.spec import Resources, StageSpec

# A small CPU-only pod: it registers the model and applies the InferenceService.
RESOURCES = Resources("500m", "1", "1Gi", "2Gi", gpus=0, timeout_seconds=1800)
TASKS = (("promote", "Promote (Model Registry, KServe)"),)
SPEC = StageSpec(name="serve", order=120, tasks=TASKS, resources=RESOURCES, image_base="cluster")
