"""How `rlhf images` builds the stage images on a machine: the builder (buildah, podman or docker, whichever is
here), the cpu flavour's base made with mmdebstrap when none is given, this machine's pip settings bind-mounted into
the build, one progress line per build step, the commit label, pushes.

The mounts (buildah and podman only: `docker build` has no `-v`): when pip here has a CA bundle (a TLS-inspecting
proxy) or a find-links folder (wheels on local disk, e.g. the CPU torch), they are mounted into every RUN step with a
pip.conf naming them; they never become part of a layer, and the cache keys do not see them. A find-links folder that
holds the CPU torch wheel makes the cpu flavour take torch from it and the rest from PyPI (TORCH_INDEX).
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess  # nosec B404: the builders with fixed argvs, no shell
import sys
import tempfile
import time
from pathlib import Path

BUILDERS = ("buildah", "podman", "docker")
PYPI = "https://pypi.org/simple"
# The cpu flavour's base, when none is given: Debian 12 (Python 3.11) from the Debian mirror, no image registry.
MMDEBSTRAP = ["mmdebstrap", "--variant=minbase", "--include=python3,python3-venv,ca-certificates,passwd", "bookworm"]
STEP = re.compile(r"STEP \d+/\d+: .*|--> Using cache .*|COMMIT .*")


class BuildError(RuntimeError):
    """A build, the base or a push failed: the message names it and its log."""


def find_builder(preferred: str | None = None) -> str:
    """buildah, else podman, else docker (the first here), or the one asked for."""
    for name in (preferred,) if preferred else BUILDERS:
        if shutil.which(name):
            return name
    wanted = preferred or " or ".join(BUILDERS)
    raise BuildError(f"no {wanted} on PATH: install one (Debian: apt-get install -y buildah podman runc mmdebstrap)")


def git_commit(root: Path) -> str:
    """The commit the images are built from, `-dirty` when tracked files differ from it."""
    try:
        head = _git(root, "rev-parse", "HEAD")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("-dirty" if _git(root, "status", "--porcelain", "--untracked-files=no") else "")


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout.strip()  # nosec


def image_exists(builder: str, image: str) -> bool:
    command = [builder, "image", "inspect", image] if builder != "buildah" else ["buildah", "inspect", image]
    return subprocess.run(command, capture_output=True).returncode == 0  # nosec B603: fixed argv


def make_base(builder: str, image: str, log: Path) -> float:
    """Debian 12 with Python 3.11 from mmdebstrap, imported as `image`; the seconds it took."""
    if not shutil.which("mmdebstrap"):
        raise BuildError(f"no base image {image} and no mmdebstrap to make it: apt-get install -y mmdebstrap")
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        tar = str(Path(tmp) / "base.tar")
        _run([*MMDEBSTRAP, tar], log, f"the base {image} (mmdebstrap)")
        if builder == "buildah":  # buildah has no import: a container from scratch with the tarball, committed
            container = subprocess.run(["buildah", "from", "scratch"], capture_output=True, text=True, check=True)  # nosec B603 B607: buildah on PATH, fixed argv
            name = container.stdout.strip()
            _run(["buildah", "add", name, tar, "/"], log, f"the base {image}")
            _run(["buildah", "commit", "--rm", name, image], log, f"the base {image}")
        else:
            _run([builder, "import", tar, image], log, f"the base {image}")
    return time.time() - started


def pip_settings() -> dict[str, str]:
    """pip's cert and find-links here (environment, then its config files), as `pip config list` prints them."""
    out = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True).stdout  # nosec B603: fixed argv
    found: dict[str, str] = {}
    for line in out.splitlines():
        m = re.match(r"(:env:|global)\.(cert|find-links)='(.*)'$", line)
        if m and m[2] not in found:  # the environment (listed first) wins
            found[m[2]] = m[3]
    return found


def host_mounts(builder: str, flavour: str, folder: Path) -> tuple[list[str], dict[str, str], str]:
    """The `-v` options mounting pip's CA bundle and wheels folder here into the RUN steps, the build arguments that
    follow (TORCH_INDEX: PyPI when the folder holds the CPU torch wheel) and a line saying what was mounted."""
    if builder == "docker":
        return [], {}, "docker: no pip settings mounted (docker build has no -v)"
    settings, mounts, conf, notes = pip_settings(), [], ["[global]"], []
    cert = settings.get("cert")
    if cert and Path(cert).is_file():
        mounts += ["-v", f"{Path(cert).resolve()}:/run/host/ca-bundle.crt:ro"]
        conf.append("cert = /run/host/ca-bundle.crt")
        notes.append(f"CA bundle {cert}")
    wheels = next((Path(p) for p in settings.get("find-links", "").split() if Path(p).is_dir()), None)
    args = {}
    if wheels:
        mounts += ["-v", f"{wheels.resolve()}:/run/host/wheels:ro"]
        conf.append("find-links = /run/host/wheels")
        notes.append(f"wheels {wheels}")
        if flavour == "cpu" and any(wheels.glob("torch-*+cpu-cp311-*.whl")):
            args["TORCH_INDEX"] = PYPI  # the CPU torch from the folder, its requirements from PyPI
            notes.append("the CPU torch from there")
    if not notes:
        return [], {}, "no pip settings here to mount"
    (folder / "pip.conf").write_text("\n".join(conf) + "\n")
    mounts += ["-v", f"{(folder / 'pip.conf').resolve()}:/etc/pip.conf:ro"]
    return mounts, args, "mounted into the build steps: " + ", ".join(notes)


def run_build(command: list[str], log: Path, what: str, say=print) -> float:
    """Run one build, its whole output to `log`, one line per Dockerfile step (and cache hits) to `say`."""
    started = time.time()
    with open(log, "a", encoding="utf-8") as f:
        f.write("$ " + shlex.join(command) + "\n")
        f.flush()
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:  # nosec
            for line in proc.stdout:
                f.write(line)
                step = STEP.search(line)
                if step:
                    say(f"    {step[0][:110]}")
            code = proc.wait()
    if code:
        raise BuildError(f"{what} failed (exit {code}); its log: {log}")
    return time.time() - started


def _run(command: list[str], log: Path, what: str) -> None:
    with open(log, "a", encoding="utf-8") as f:
        f.write("$ " + shlex.join(command) + "\n")
        f.flush()
        if subprocess.run(command, stdout=f, stderr=subprocess.STDOUT).returncode:  # nosec B603: fixed argv
            raise BuildError(f"{what} failed; its log: {log}")
