"""The merge stage's one declaration (`kfrlhf.common.spec`)."""

from kfrlhf.common.spec import Resources, StageSpec

# peft's merge_and_unload in fp32 on the CPU: no GPU.
RESOURCES = Resources("2", "4", "32Gi", "48Gi", gpus=0, timeout_seconds=2 * 3600)
# Its tasks, one per stage that declares a `method` (`merge_<stage>`), are added by
# `kfrlhf.pipelines.definitions.stages`, which sees every stage.
SPEC = StageSpec(name="merge", order=30, tasks=(), resources=RESOURCES)
