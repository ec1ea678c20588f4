"""Data parallelism inside a stage's processes: rank, world size and the collectives the training stages share.

A stage started on several processes (by `kfrlhf.launch`, from its `distributed` config section)
calls these; batch sizes stay global: a stage splits `batch_size` across the processes, so a run
means the same at any scale.

Inside a launched process `torch.distributed` is set up by the launcher's environment (RANK,
WORLD_SIZE, MASTER_ADDR ...); `init()` joins the group (NCCL on GPUs, gloo on CPUs) and the helpers
below are no-ops in a single process.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def init() -> None:
    """Join the process group the launcher's environment describes (once; nothing in one process)."""
    if world_size() > 1 and not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """The element-wise sum over all processes (float64 on the process group's device); a copy."""
    out = values.detach().double().clone()
    if world_size() > 1:
        init()
        device = torch.device("cuda") if dist.get_backend() == "nccl" else torch.device("cpu")
        out = out.to(device)
        dist.all_reduce(out)
    return out.to(values.device)


def all_reduce_mean(values: dict[str, float]) -> dict[str, float]:
    """Each value averaged over the processes (one all-reduce for the whole dict)."""
    if world_size() == 1:
        return dict(values)
    summed = all_reduce_sum(torch.tensor(list(values.values()), dtype=torch.double)) / world_size()
    return dict(zip(values, summed.tolist()))


def any_process(flag: bool) -> bool:
    """True when `flag` is true on any process (a SIGTERM seen by one rank stops them all at once)."""
    return bool(all_reduce_sum(torch.tensor([float(flag)])).item() > 0)


def average_gradients(params: list[torch.nn.Parameter]) -> None:
    """DDP's gradient averaging, for a loop that does not wrap its model: one flat all-reduce."""
    if world_size() == 1:
        return
    grads = [p.grad for p in params if p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def broadcast_parameters(params: list[torch.nn.Parameter]) -> None:
    """Rank 0's values on every rank (fresh adapters start identical)."""
    if world_size() > 1:
        init()
        for p in params:
            dist.broadcast(p.data, src=0)


def gather_objects(obj) -> list:
    """`obj` of every rank, in rank order (on every rank)."""
    if world_size() == 1:
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if world_size() > 1:
        init()
        dist.barrier()
