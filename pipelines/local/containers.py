"""`rlhf run --runner container`: every kfp.local task in its stage's image, with podman (or docker), as uid 1000.

kfp.local builds each task's command and executor input as for its SubprocessRunner; instead of running the command
in this Python, `Console.capture` hands it to `ContainerRunner.command`, which runs it in the task's image (the
pipeline is built with each task's image set, `image_for`) with the image's own Python: nothing from this venv.
The artifact folders are mounted as KFP's launcher provides them (the pipeline root at its own path, read-write; the
checkpoint root likewise); the paths a config names on this machine, read-only. After each task the container's
image ID and the image's commit label go to `OUTPUT/containers.json`.

The workarounds, all here (docs/cluster.md "Stage images" says why):
- kfp.local's DockerRunner is not used: it removes the container when it exits and reports an exit it could not read
  as success (kfp 2.17 `docker_task_handler.run_docker_container`), mounts the pipeline root only, and needs the
  docker SDK and a Docker API (`podman system service`); a `podman run` per task needs neither.
- podman runs with `--runtime runc` (crun fails on this host's hybrid cgroups) and `--ulimit nofile=4096:4096
  --ulimit nproc=4096:4096` (runc cannot raise limits above what this sandbox allows), `--network host` (no bridge
  to set up; the stages reach the hub as on the host).
- uid 1000 must write where kfp.local made the task's folders as this user: run as root here, the pipeline root and
  the checkpoints are handed to 1000:1000 before each task (a cluster's launcher writes into emptyDirs it owns).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess  # nosec B404: podman/docker with fixed argvs, no shell
from dataclasses import dataclass, field
from pathlib import Path

from kfrlhf.common.config import ConfigError

ENGINES = ("podman", "docker")
UID = 1000  # the `rlhf` user of images/Dockerfile, as on the cluster (platform.py run_as_user)
# The variables a task passes on from this environment by name (never by value on the command line).
PASSED_ENV = ("WANDB_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
PODMAN_WORKAROUNDS = ("--runtime", "runc")
RUN_OPTIONS = (
    "--ulimit=nofile=4096:4096",
    "--ulimit=nproc=4096:4096",
    "--network=host",
    # What the KFP backend sets on a task's container: no privilege escalation, no capabilities.
    "--cap-drop=all",
    "--security-opt=no-new-privileges",
)
COMMIT_LABEL = "org.opencontainers.image.revision"


@dataclass
class ContainerRunner:
    """Runs kfp.local's task commands in containers; `record` collects what ran where."""

    engine: str
    writable: list[Path]  # mounted read-write at their own paths (the pipeline root, the checkpoints)
    readable: list[Path] = field(default_factory=list)  # mounted read-only at their own paths
    env: dict[str, str] = field(default_factory=dict)
    workdir: Path | None = None  # this folder, when the config names paths relative to it
    record: dict[str, dict] = field(default_factory=dict)
    prefix: str = field(default_factory=lambda: f"rlhf-{os.getpid()}")

    def command(self, image: str, full_command: list[str], env_vars: dict | None, task: str) -> list[str]:
        """The `podman run` of one task: its image, uid 1000, the mounts, the env; the container kept until
        `finished` has read its image."""
        self._hand_over()
        mounts = [f"--volume={p}:{p}:rw" for p in self.writable] + [f"--volume={p}:{p}:ro" for p in self.readable]
        env = {**self.env, **(env_vars or {}), "PYTHONUNBUFFERED": "1"}
        passed = [f"--env={name}" for name in PASSED_ENV if name in os.environ]
        engine = [self.engine, *(PODMAN_WORKAROUNDS if self.engine == "podman" else ())]
        return [
            *engine,
            "run",
            f"--name={self._name(task)}",
            f"--user={UID}:{UID}",
            *RUN_OPTIONS,
            *mounts,
            *([f"--workdir={self.workdir}"] if self.workdir else []),
            *[f"--env={k}={v}" for k, v in env.items()],
            *passed,
            image,
            *full_command,
        ]

    def finished(self, task: str, image: str) -> None:
        """Note the image the task's container ran (its ID and commit label), then remove the container."""
        name = self._name(task)
        image_id = self._inspect("container", name, "{{.Image}}")
        self.record[task] = {
            "image": image,
            "image_id": image_id,
            "commit": self._inspect("image", image_id, '{{index .Labels "' + COMMIT_LABEL + '"}}'),
        }
        subprocess.run([self.engine, "rm", "--force", name], capture_output=True)  # nosec B603: fixed argv

    def _name(self, task: str) -> str:
        return f"{self.prefix}-{task}"

    def _inspect(self, kind: str, name: str, fmt: str) -> str:
        out = subprocess.run(  # nosec B603: fixed argv
            [self.engine, kind, "inspect", "--format", fmt, name], capture_output=True, text=True
        )
        return out.stdout.strip() if out.returncode == 0 else ""

    def _hand_over(self) -> None:
        """Run as root here, the writable folders go to uid 1000 (the task runs as it)."""
        if os.geteuid() != 0:
            return
        for root in self.writable:
            for path in [root, *root.rglob("*")]:
                if not path.is_symlink():
                    os.chown(path, UID, UID)


def find_engine() -> str:
    """podman, else docker: the first on PATH."""
    engine = next((e for e in ENGINES if shutil.which(e)), None)
    if engine is None:
        raise ConfigError("--runner container needs podman or docker (Debian: apt-get install -y podman runc)")
    return engine


def container_runner(engine: str, writable: list[Path], config: dict, env: dict[str, str]) -> ContainerRunner:
    """The runner for one `rlhf run --runner container`: the config's local paths readable."""
    paths, relative = local_paths(config)
    return ContainerRunner(engine, writable, paths, env, workdir=Path.cwd() if relative else None)


def check_images(engine: str, images: list[str]) -> None:
    """Every image the run needs is here (built by `rlhf images --flavour cpu`): one message naming the missing."""
    missing = [
        image
        for image in dict.fromkeys(images)
        if subprocess.run([engine, "image", "inspect", image], capture_output=True).returncode  # nosec B603
    ]
    if missing:
        raise ConfigError(
            f"--runner container: no image {', '.join(missing)} here; build them with "
            "`rlhf images --flavour cpu` (make images), or give the --registry/--tag they were built with"
        )


def local_paths(config: dict) -> tuple[list[Path], bool]:
    """The files and folders on this machine a run's config names (data files, model folders), absolute; whether
    any was named relative to this folder."""
    found: list[Path] = []
    relative = []

    def walk(value):
        if isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)
        elif isinstance(value, str) and ("/" in value or value.startswith(".")) and Path(value).exists():
            found.append(Path(value).resolve())
            relative.append(not Path(value).is_absolute())

    walk(config)
    return sorted(set(found)), any(relative)


def write_record(runner: ContainerRunner, output: Path) -> None:
    (output / "containers.json").write_text(json.dumps(runner.record, indent=2) + "\n")
