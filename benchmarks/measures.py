"""What benchmarks/gpu_step.py measures with: the GPUs' bf16 peaks (for the MFU), step medians, the CPU allocator's
peak (a stand-in for torch.cuda.max_memory_allocated) and the runtime calls a profiled step is summed up by."""

from __future__ import annotations

import contextlib
import math
import statistics

import torch

# Dense (no sparsity) bf16 tensor-core peaks, TFLOP/s, by a substring of torch.cuda.get_device_name(); first match.
BF16_PEAK_TFLOPS = (
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H200", 989.0),
    ("H100", 989.0),  # SXM
    ("GH200", 989.0),
    ("B200", 2250.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("L4", 121.0),
)


def bf16_peak(name: str | None) -> float | None:
    return next((peak for key, peak in BF16_PEAK_TFLOPS if name and key in name), None)


@contextlib.contextmanager
def cpu_allocations():
    """A CPU stand-in for torch.cuda.max_memory_allocated: the CPU allocator's peak while the block runs, above
    what was allocated before it, from torch.profiler's memory events (every allocation and free, in order).
    Yields a function that gives the bytes once the block has ended."""
    from torch.profiler import ProfilerActivity, profile

    peak = 0
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        yield lambda: peak
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    now = 0
    for e in sorted(events, key=lambda e: e.start_ns()):
        if e.device_type() == torch.autograd.DeviceType.CPU:
            now += e.nbytes()
            peak = max(peak, now)


def tensor_bytes(*modules) -> int:
    """The bytes of the modules' parameters and buffers, each storage once (tied weights share one)."""
    storages = {
        t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for m in modules for t in m.state_dict().values()
    }
    return sum(storages.values())


def free(device: str) -> None:
    """Give back what the last run left, so that each run's peak is its own."""
    import gc

    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


def finite(xs):
    return [x for x in xs if x is not None and math.isfinite(x)]


def steady(xs: list[float]) -> float | None:
    """The median step after the first (the first when there is only one)."""
    xs = finite(xs)
    return statistics.median(xs[1:] if len(xs) > 1 else xs) if xs else None


# What a profiled step's runtime calls are counted by (gpu_step.profile_step).
RUNTIME_CALLS = ("cudaLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernel", "cudaGraphLaunch", "cudaMemcpyAsync")
SYNCS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize")
HOST_READ = "aten::_local_scalar_dense"  # .item(), .tolist(), a tensor in an `if`: on a GPU, each waits for it
