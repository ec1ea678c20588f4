"""The data stage's one declaration (`kfrlhf.common.spec`)."""

from kfrlhf.common.spec import Resources, StageSpec

# A CPU-only pod: reading, checking and writing datasets.
RESOURCES = Resources("1", "2", "4Gi", "8Gi", gpus=0, timeout_seconds=2 * 3600)
SPEC = StageSpec(name="data", order=10, tasks=(("data", "Prepare data"),), resources=RESOURCES, image_base="light")
