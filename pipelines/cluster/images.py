"""Container images: the registry, the tag, the two flavours, and how `images/Dockerfile` builds each stage's image
(its `stage` target with the build arguments of the flavour and of the stage's spec: `rlhf images`).

The pipeline definitions never spell an image; `image_for(task, registry, tag)` does, at
compile time. `rlhf compile --registry R --tag T` (or RLHF_IMAGE_REGISTRY / RLHF_IMAGE_TAG)
overrides the defaults below; the committed pipelines/compiled/ uses the defaults.
How a builder runs on this machine (the cpu base, mounts, progress) is `kfrlhf.pipelines.cluster.image_build`.
"""

from __future__ import annotations

from kfrlhf import __version__
from kfrlhf.pipelines.definitions.stages import SPECS, stage_of

DEFAULT_REGISTRY = "ghcr.io/kubeflow-rlhf"
DEFAULT_TAG = __version__
REGISTRY_ENV = "RLHF_IMAGE_REGISTRY"
TAG_ENV = "RLHF_IMAGE_TAG"

# Relative to the repository root, which is also the build context. Every stage image is its `stage`
# target, built on the base its spec names (`StageSpec.build_args`).
DOCKERFILE = "images/Dockerfile"
IGNOREFILE = "images/Dockerfile.dockerignore"
STAGE_TARGET = "stage"

# The flavours differ only in these build arguments. cuda: the Dockerfile's defaults (what the cluster runs). cpu: a
# Debian 12 base with Python 3.11 (made with mmdebstrap when none is given: image_build.CPU_BASE_IMAGE) and CPU torch.
FLAVOURS = {
    "cuda": {
        "BASE_IMAGE": "nvidia/cuda:12.8.1-base-ubuntu24.04",
        "TORCH_INDEX": "https://download.pytorch.org/whl/cu128",
    },
    "cpu": {
        "BASE_IMAGE": "localhost/kubeflow-rlhf-base:bookworm",
        "TORCH_INDEX": "https://download.pytorch.org/whl/cpu",
    },
}
# Labels every stage image carries (the Dockerfile's `stage` target).
STAGE_LABEL = "org.kubeflow-rlhf.stage"
FLAVOUR_LABEL = "org.kubeflow-rlhf.flavour"
COMMIT_LABEL = "org.opencontainers.image.revision"


def default_tag(flavour: str = "cuda") -> str:
    """The cuda images are tagged with the version, the cpu ones with `<version>-cpu`."""
    return DEFAULT_TAG if flavour == "cuda" else f"{DEFAULT_TAG}-{flavour}"


def image_repository(stage: str, registry: str = DEFAULT_REGISTRY) -> str:
    return f"{registry.rstrip('/')}/kubeflow-rlhf-{stage}"


def image_for(task: str, registry: str = DEFAULT_REGISTRY, tag: str = DEFAULT_TAG) -> str:
    """The full image reference the task `task` (or stage) runs."""
    return f"{image_repository(stage_of(task), registry)}:{tag}"


def build_args(stage: str, flavour: str = "cuda", commit: str = "unknown", **overrides: str) -> dict[str, str]:
    """The build arguments of `stage`'s image: its spec's, its flavour's (cuda: the Dockerfile's defaults, spelled
    out), the commit label; `overrides` (BASE_IMAGE, TORCH_INDEX) replace the flavour's."""
    flavour_args = {**FLAVOURS[flavour], **{k: v for k, v in overrides.items() if v}}
    return {**SPECS[stage].build_args, **flavour_args, "FLAVOUR": flavour, "GIT_COMMIT": commit}


def build_command(
    stage: str,
    registry: str = DEFAULT_REGISTRY,
    tag: str = DEFAULT_TAG,
    builder: str = "docker",
    args: dict[str, str] | None = None,
    extra: tuple[str, ...] = (),
) -> list[str]:
    """The build that makes `stage`'s image, run from the repository root: `docker build`, `podman build` or
    `buildah bud` (the last two with cached layers, chroot isolation: no daemon, and the ignore file BuildKit finds
    by itself). `args`: the build arguments (default: the spec's only); `extra`: more options (the mounts)."""
    image = f"{image_repository(stage, registry)}:{tag}"
    build_args_ = args if args is not None else SPECS[stage].build_args
    args_ = [f"--build-arg={name}={value}" for name, value in build_args_.items()]
    command = {"docker": ["docker", "build"], "podman": ["podman", "build"], "buildah": ["buildah", "bud"]}[builder]
    if builder != "docker":
        command += ["--layers", "--isolation=chroot", f"--ignorefile={IGNOREFILE}", *extra]
        # buildah 1.28 reuses a cached LABEL step whose ARGs differ (every stage on a base would carry the first
        # stage's label, and the commit of an older build): the labels again, on the command line.
        labels = {STAGE_LABEL: "STAGE", FLAVOUR_LABEL: "FLAVOUR", COMMIT_LABEL: "GIT_COMMIT"}
        command += [f"--label={label}={build_args_[arg]}" for label, arg in labels.items() if arg in build_args_]
    return [*command, "-f", DOCKERFILE, f"--target={STAGE_TARGET}", *args_, "-t", image, "."]
