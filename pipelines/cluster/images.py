"""Container images: the registry, the tag, and how `images/Dockerfile` builds each stage's image (its
`stage` target with the build arguments the stage's spec declares: `rlhf images`).

The pipeline definitions never spell an image; `image_for(task, registry, tag)` does, at
compile time. `rlhf compile --registry R --tag T` (or RLHF_IMAGE_REGISTRY / RLHF_IMAGE_TAG)
overrides the defaults below; the committed pipelines/compiled/ uses the defaults.
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
STAGE_TARGET = "stage"


def image_repository(stage: str, registry: str = DEFAULT_REGISTRY) -> str:
    return f"{registry.rstrip('/')}/kubeflow-rlhf-{stage}"


def image_for(task: str, registry: str = DEFAULT_REGISTRY, tag: str = DEFAULT_TAG) -> str:
    """The full image reference the task `task` (or stage) runs."""
    return f"{image_repository(stage_of(task), registry)}:{tag}"


def build_command(stage: str, registry: str = DEFAULT_REGISTRY, tag: str = DEFAULT_TAG) -> list[str]:
    """The `docker build` that makes `stage`'s image, run from the repository root."""
    args = [f"--build-arg={name}={value}" for name, value in SPECS[stage].build_args.items()]
    image = f"{image_repository(stage, registry)}:{tag}"
    return ["docker", "build", "-f", DOCKERFILE, f"--target={STAGE_TARGET}", *args, "-t", image, "."]
