"""Start a training stage on one process, on the GPUs of this pod, or on several nodes: one path for all.

`run_stage(target, section, kwargs)` reads `kwargs[section]["distributed"]` (the stage's
`DistributedConfig`) and calls `target` ("module:function", the stage's plain-Python entry point)
  - in this process when one process is asked for (or this already is a launched process);
  - through `accelerate launch` across this pod's processes when `nodes` is 1, with the shipped
    config of the strategy (accelerate_configs/): each process runs `python -m
    kfrlhf.launch.launcher worker TARGET ARGS RESULT`, rank 0 writes the function's result;
  - as a Kubeflow Trainer TrainJob when `nodes` > 1 (`kfrlhf.launch.trainjob_run`): every node runs
    `python -m kfrlhf.launch.launcher node SECTION TARGET ARGS RESULT`, which builds the same
    `accelerate launch` command from the runtime's PET_* environment (node rank, master address).
A SIGTERM to the component is passed on to the processes (each saves a checkpoint and stops, exit 143).
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from kfrlhf.common import distributed
from kfrlhf.common.checkpoint import PREEMPTED_EXIT, atomic_write_text
from kfrlhf.common.config import from_dict

from .config import DistributedConfig

CONFIGS = Path(__file__).parent / "accelerate_configs"


def config_file(strategy: str) -> Path:
    return CONFIGS / f"{strategy}.yaml"


def call(target: str, kwargs: dict):
    module, _, function = target.partition(":")
    return getattr(importlib.import_module(module), function)(**kwargs)


def stage_distributed(section: str, kwargs: dict) -> DistributedConfig:
    return from_dict(DistributedConfig, (kwargs[section] or {}).get("distributed"), f"{section}.distributed")


def launch_command(
    dist: DistributedConfig,
    processes: int,
    target: str,
    args_file: str,
    result_file: str,
    machine_rank: int | str = 0,
    main_process_ip: str = "127.0.0.1",
    main_process_port: int | str = 29500,
) -> list[str]:
    """`accelerate launch` of `processes` per node on `dist.nodes` nodes, each running the worker."""
    return [
        *(sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config_file(dist.strategy))),
        *("--num_processes", str(processes * dist.nodes), "--num_machines", str(dist.nodes)),
        *("--machine_rank", str(machine_rank)),
        *("--main_process_ip", main_process_ip, "--main_process_port", str(main_process_port)),
        *("--module", "kfrlhf.launch.launcher", "worker", target, args_file, result_file),
    ]


def entry_point(function) -> str:
    """ "module:function", what a launched process imports."""
    return function if isinstance(function, str) else f"{function.__module__}:{function.__qualname__}"


def run_stage(function, section: str, kwargs: dict, inputs: tuple[str, ...] = (), output: str = "output_dir"):
    """`function(**kwargs)` on the processes `kwargs[section].distributed` asks for; rank 0's result.

    `function`: the stage's entry point (or its "module:function"); `inputs` and `output` name the
    path arguments a TrainJob must find on shared storage."""
    target = entry_point(function)
    dist = stage_distributed(section, kwargs)
    if distributed.world_size() > 1 or dist.world_size() == 1:
        return call(target, kwargs)
    if dist.nodes > 1:
        from .trainjob_run import run_trainjob

        return run_trainjob(target, section, kwargs, dist, inputs, output)
    with tempfile.TemporaryDirectory(prefix="rlhf-launch-") as tmp:
        args_file, result_file = Path(tmp) / "args.json", Path(tmp) / "result.json"
        args_file.write_text(json.dumps(kwargs))
        command = launch_command(dist, dist.processes(), target, str(args_file), str(result_file), 0)
        command[command.index("--main_process_port") + 1] = str(free_port())
        run_forwarding_sigterm(command, section)
        return json.loads(result_file.read_text())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_forwarding_sigterm(command: list[str], what: str) -> None:
    """Run `command`, passing a SIGTERM on to it; raise when it fails (SystemExit 143 after a SIGTERM)."""
    proc = subprocess.Popen(command)
    stopped = []

    def forward(signum, frame):
        stopped.append(signum)
        proc.send_signal(signal.SIGTERM)

    previous = signal.signal(signal.SIGTERM, forward)
    try:
        code = proc.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)
    if stopped:
        raise SystemExit(PREEMPTED_EXIT)
    if code:
        raise RuntimeError(f"{what}: the distributed run failed (exit status {code}; the processes' output is above)")


def worker(target: str, args_file: str, result_file: str) -> None:
    """One launched process: join the group, run the stage, rank 0 writes the result."""
    distributed.init()
    result = call(target, json.loads(Path(args_file).read_text()))
    if distributed.is_main():
        atomic_write_text(Path(result_file), json.dumps(result))
    distributed.barrier()


def node(section: str, target: str, args_file: str, result_file: str) -> None:
    """One TrainJob node: `accelerate launch` of this node's processes, placed by the runtime's PET_* environment."""
    env = os.environ
    dist = stage_distributed(section, json.loads(Path(args_file).read_text()))
    command = launch_command(
        dist,
        int(env["PET_NPROC_PER_NODE"]),
        target,
        args_file,
        result_file,
        env["PET_NODE_RANK"],
        env["PET_MASTER_ADDR"],
        env["PET_MASTER_PORT"],
    )
    run_forwarding_sigterm(command, "node")


if __name__ == "__main__":
    role, *rest = sys.argv[1:]
    {"worker": worker, "node": node}[role](*rest)
