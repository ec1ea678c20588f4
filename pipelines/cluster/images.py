"""Container images: the registry, the tag and which `images/Dockerfile` target builds each stage.

The pipeline definitions never spell an image; `image_for(task, registry, tag)` does, at
compile time. `rlhf compile --registry R --tag T` (or RLHF_IMAGE_REGISTRY / RLHF_IMAGE_TAG)
overrides the defaults below; the committed pipelines/compiled/ uses the defaults.
"""

from __future__ import annotations

from kfrlhf import __version__
from kfrlhf.pipelines.definitions.stages import stage_of

DEFAULT_REGISTRY = "ghcr.io/kubeflow-rlhf"
DEFAULT_TAG = __version__
REGISTRY_ENV = "RLHF_IMAGE_REGISTRY"
TAG_ENV = "RLHF_IMAGE_TAG"

# Relative to the repository root, which is also the build context; one target per stage.
DOCKERFILE = "images/Dockerfile"


def image_repository(stage: str, registry: str = DEFAULT_REGISTRY) -> str:
    return f"{registry.rstrip('/')}/kubeflow-rlhf-{stage}"


def image_for(task: str, registry: str = DEFAULT_REGISTRY, tag: str = DEFAULT_TAG) -> str:
    """The full image reference the task `task` (or stage) runs."""
    return f"{image_repository(stage_of(task), registry)}:{tag}"
