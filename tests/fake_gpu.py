"""A GPU that is not there: CPU tensors marked as living on `cuda:0`, so that a CPU-only suite fails where a
real GPU would on tensors of two devices.

`on_fake_gpu()` is a context manager. Inside it, a marked tensor reports `device` cuda:0 and `is_cuda`;
`tensor.to(d)` / `module.to(d)` / factories with `device=d` (d a cuda device) give marked tensors and
`.cpu()` / `device="cpu"` unmarked ones; an op's outputs are marked when any of its tensor inputs is (and
tensors an op makes inside itself follow the Python-level call that made them). An op that combines a
marked tensor with an unmarked one raises CUDA's own error, with the same exceptions CUDA makes: a 0-dim
CPU tensor is accepted as a scalar by element-wise ops (never by `cat`/`stack`), advanced indexing
accepts CPU indices, copies cross devices. `.numpy()` of a marked tensor fails as on a GPU.

Everything still runs on the CPU with real values, so sampling, `.item()` and training steps work.
"""

from __future__ import annotations

import contextlib

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

GPU = torch.device("cuda", 0)
MARK = "_on_fake_gpu"
# Ops whose arguments may sit on two devices on a real GPU.
CROSS_DEVICE = {"copy_", "_to_copy"}
INDEXING = {"index", "index_put", "index_put_", "_index_put_impl_"}  # CPU indices are fine, not CPU data
NO_SCALARS = {"cat", "stack"}  # a 0-dim CPU tensor is a scalar to element-wise ops, not to these
DEVICE, IS_CUDA = torch.Tensor.device.__get__, torch.Tensor.is_cuda.__get__  # method-wrappers: compare with ==


def marked(t) -> bool:
    return isinstance(t, torch.Tensor) and getattr(t, MARK, False)


def _mark(tree, value: bool):
    for t in tree_flatten(tree)[0]:
        if isinstance(t, torch.Tensor):
            setattr(t, MARK, value)
    return tree


def _where(device) -> bool | None:
    """True for the GPU, False for the CPU, None for no device or another one (meta: left to torch)."""
    kind = None if device is None else torch.device(device).type
    return {"cuda": True, "cpu": False}.get(kind)


class DeviceMix(RuntimeError):
    pass


class _Check(TorchDispatchMode):
    """At the aten level: refuse device mixes, mark outputs."""

    def __init__(self, owner: _Devices):
        super().__init__()
        self.owner = owner

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        tensors = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        name = func.overloadpacket.__name__
        on_gpu = [t for t in tensors if marked(t)]
        if on_gpu and name not in CROSS_DEVICE:
            checked = tensors[:1] if name in INDEXING else tensors  # the indexed tensor, not its indices
            scalars_ok = name not in NO_SCALARS
            cpu = [t for t in checked if not marked(t) and not (scalars_ok and t.dim() == 0)]
            if cpu or (name in INDEXING and not marked(tensors[0])):
                raise DeviceMix(
                    "Expected all tensors to be on the same device, but found at least two devices, cuda:0 and "
                    f"cpu! (in {func}: shapes on the CPU {[tuple(t.shape) for t in cpu]})"
                )
        out = func(*args, **kwargs)
        if name == "copy_":  # the destination stays where it is
            return out
        # A factory inside an op goes where the Python-level call that made it goes.
        return _mark(out, bool(on_gpu) if tensors else self.owner.context_on_gpu)


class _Devices(TorchFunctionMode):
    """At the Python level: where tensors go (`to`, `cpu`, `device=`) and what `device` they report."""

    def __init__(self):
        super().__init__()
        self.context_on_gpu = False

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        name = getattr(func, "__name__", "")
        if func in (DEVICE, IS_CUDA):
            return (GPU if func == DEVICE else True) if marked(args[0]) else func(*args)
        if name in ("numpy", "__array__") and marked(args[0]):
            raise TypeError("can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() first.")
        target = None  # where the result goes: True on the GPU, False on the CPU, None as the inputs say
        if name == "to":
            copy = kwargs.pop("copy", False)
            device, dtype, non_blocking, memory_format = torch._C._nn._parse_to(*args[1:], **kwargs)
            target = _where(device)
            if target is not None:
                kept = {"dtype": dtype, "non_blocking": non_blocking, "memory_format": memory_format}
                args, kwargs = (args[0], "cpu"), {k: v for k, v in kept.items() if v is not None}
            kwargs["copy"] = copy
        elif name in ("cpu", "cuda"):
            target = name == "cuda"
            args, kwargs = (args[0],), {}
            func = torch.Tensor.cpu
        elif _where(kwargs.get("device")) is not None:
            target = _where(kwargs["device"])
            kwargs["device"] = "cpu"
        elif name.startswith("new_"):  # new_tensor, new_zeros...: on the device of the tensor they are called on
            target = marked(args[0])
        inputs = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        outer, self.context_on_gpu = self.context_on_gpu, bool(target) or any(marked(t) for t in inputs)
        try:
            out = func(*args, **kwargs)
        finally:
            self.context_on_gpu = outer
        if target is not None:
            if isinstance(out, torch.Tensor) and any(out is t for t in inputs) and marked(out) != target:
                out = out.view_as(out)  # moved: a new tensor, as on a real device
            _mark(out, target)
        return out


@contextlib.contextmanager
def on_fake_gpu():
    """Run the block as if `torch.device("cuda")` were a GPU (see the module docstring)."""
    original = torch.nn.Module.to

    def module_to(module, *args, **kwargs):
        device, dtype, non_blocking, _ = torch._C._nn._parse_to(*args, **kwargs)
        target = _where(device)
        if target is None:
            return original(module, *args, **kwargs)
        module = original(module, dtype=dtype, non_blocking=non_blocking) if dtype else module
        for t in [*module.parameters(), *module.buffers()]:
            setattr(t, MARK, target)
        return module

    torch.nn.Module.to = module_to
    devices = _Devices()
    try:
        with devices, _Check(devices):
            yield
    finally:
        torch.nn.Module.to = original


def to_fake_gpu(module: torch.nn.Module) -> torch.nn.Module:
    """Mark a module's parameters and buffers as on the GPU (outside `on_fake_gpu` too)."""
    for t in [*module.parameters(), *module.buffers()]:
        setattr(t, MARK, True)
    return module
