"""Container images: the registry, the tag and which `images/Dockerfile` target builds each stage.

The pipeline definitions never spell an image; `image_for(stage, registry, tag)` does, at
compile time. `rlhf compile --registry R --tag T` (or RLHF_IMAGE_REGISTRY / RLHF_IMAGE_TAG)
overrides the defaults below; the committed pipelines/compiled/ uses the defaults.
"""

from __future__ import annotations

from kfrlhf import __version__

DEFAULT_REGISTRY = "ghcr.io/kubeflow-rlhf"
DEFAULT_TAG = __version__
REGISTRY_ENV = "RLHF_IMAGE_REGISTRY"
TAG_ENV = "RLHF_IMAGE_TAG"

# Relative to the repository root, which is also the build context.
DOCKERFILE = "images/Dockerfile"
# Pipeline stage -> Dockerfile target. merge_sft, merge_ppo and merge_dpo all run `merge`.
STAGE_TARGETS = {
    "data": "data",
    "sft": "sft",
    "merge": "merge",
    "reward": "reward",
    "ppo": "ppo",
    "dpo": "dpo",
    "eval": "eval",
}


def base_stage(stage: str) -> str:
    """`merge_sft` -> `merge`; other stage names map to themselves."""
    base = "merge" if stage.startswith("merge_") else stage
    if base not in STAGE_TARGETS:
        raise KeyError(f"unknown stage {stage!r}; known: {', '.join(STAGE_TARGETS)}")
    return base


def image_repository(target: str, registry: str = DEFAULT_REGISTRY) -> str:
    return f"{registry.rstrip('/')}/kubeflow-rlhf-{target}"


def image_for(stage: str, registry: str = DEFAULT_REGISTRY, tag: str = DEFAULT_TAG) -> str:
    """The full image reference the task of `stage` runs."""
    return f"{image_repository(STAGE_TARGETS[base_stage(stage)], registry)}:{tag}"


def build_commands(registry: str = DEFAULT_REGISTRY, tag: str = DEFAULT_TAG) -> list[str]:
    """One `docker build` per target, run from the repository root (printed by the docs/CI)."""
    return [
        f"docker build -f {DOCKERFILE} --target {t} -t {image_repository(t, registry)}:{tag} ."
        for t in dict.fromkeys(STAGE_TARGETS.values())
    ]
