"""The `distributed` section of a training stage's config: how many processes and nodes run it, and how.

Every training stage's config (SFT, reward, PPO, DPO, GRPO) has one (`--set
ppo.distributed.processes_per_node=2`). One process (the default) runs the stage in the component's
own process; more start it through `kfrlhf.launch.launcher` (`accelerate launch` across the pod's
GPUs, or a Kubeflow Trainer TrainJob across nodes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch

from kfrlhf.common.config import NON_NEGATIVE, POSITIVE, ConfigError, StageConfig

# DeepSpeed ZeRO is not offered: deepspeed is in no extra and no image, so nothing here could run or test it.
STRATEGIES = ("ddp", "fsdp")
CLEANUP = ("always", "on-success", "never")


@dataclass
class DistributedConfig(StageConfig):
    """How many processes train a stage, and how they share the model.

    `processes_per_node` (0: one per GPU of the node, one on a CPU-only node), `nodes` (more than 1:
    a Kubeflow Trainer TrainJob on the `runtime` ClusterTrainingRuntime), `strategy`: `ddp` (a full
    replica per GPU: fastest while the model, its gradients and optimizer state fit one GPU) or `fsdp`
    (parameters, gradients and optimizer state sharded across GPUs). `cleanup`: when the TrainJob is
    deleted (always, on-success: failed ones stay for `kubectl logs`, never)."""

    section: ClassVar[str] = "distributed"
    RULES: ClassVar[dict] = dict(
        processes_per_node=NON_NEGATIVE,
        nodes=POSITIVE,
        strategy=(lambda v: v in STRATEGIES, f"one of {', '.join(STRATEGIES)}"),
        cleanup=(lambda v: v in CLEANUP, f"one of {', '.join(CLEANUP)}"),
        runtime=(lambda v: bool(v), "the name of a ClusterTrainingRuntime"),
    )

    HELP: ClassVar[dict] = dict(
        processes_per_node="training processes per node (0: one per GPU)",
        nodes="nodes; more than 1 runs the stage as a TrainJob",
        strategy="ddp (a replica per GPU) or fsdp (sharded)",
        cleanup="when the TrainJob is deleted: always, on-success or never",
        runtime="the ClusterTrainingRuntime a TrainJob uses",
    )

    processes_per_node: int = 0
    nodes: int = 1
    strategy: str = "ddp"
    cleanup: str = "on-success"
    runtime: str = "torch-distributed"

    def check(self) -> None:
        if self.processes_per_node == 1 and self.nodes == 1 and self.strategy != "ddp":  # 0: known at run time
            raise ConfigError(f"distributed.strategy {self.strategy} needs more than one process")

    def processes(self, gpus: int | None = None) -> int:
        """Processes per node: the setting, or one per GPU (`gpus`, default the GPUs this node sees)."""
        if self.processes_per_node:
            return self.processes_per_node
        gpus = torch.cuda.device_count() if gpus is None else gpus
        return max(gpus, 1)

    def world_size(self, gpus: int | None = None) -> int:
        return self.nodes * self.processes(gpus)


@dataclass
class DistributedFields:
    """The `distributed` section of a training stage's config."""

    HELP: ClassVar[dict] = dict(
        distributed="how many processes train the stage, and how they share the model",
    )

    distributed: DistributedConfig = field(default_factory=DistributedConfig)
