"""Cluster settings for compiled pipelines, applied to every task through kfp and kfp-kubernetes.

`make_configure(settings)` returns the `configure(task, stage)` hook that the pipeline builders
(`build_rlhf_pipeline(configure)` ...) call on each task: image, display name, CPU/memory,
GPUs, GPU node pool (node selector, tolerations), secrets as env vars, the model-cache PVC,
retries with backoff, caching, timeout, pod labels and a non-root security context.
The local runner (`kfp.local`) builds the same pipeline without the hook.

Training stages (DISTRIBUTED_STAGES) also get `RLHF_TRAINJOB_TEMPLATE`: the same settings as the
node template of the TrainJob they create when their config asks for `distributed.nodes` > 1
(`kfrlhf.launch.trainjob`). A stage compiled with `nodes` > 1 (`rlhf compile --nodes ppo=4`) is a
launcher pod: no GPUs of its own (its `gpus` are the GPUs per node), and the pipeline's default
`<stage>.distributed.nodes` is set to match (`kfrlhf.pipelines.cluster.compile`).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace

from kfp import kubernetes
from kfp.dsl import PipelineTask

from kfrlhf.launch.trainjob import SHM_VOLUME, TEMPLATE_ENV, NodeTemplate, shm_size
from kfrlhf.pipelines.cluster.images import DEFAULT_REGISTRY, DEFAULT_TAG, image_for, image_repository
from kfrlhf.pipelines.definitions.stages import DISPLAY_NAMES, DISTRIBUTED_STAGES, SPECS, stage_of


@dataclass
class StageResources:
    """What one stage's pod asks for. `gpus=0` keeps the pod off the GPU node pool. CPU and memory are
    per GPU: a pod (or TrainJob node) with N GPUs asks for N times as much (`per_pod`)."""

    cpu_request: str = "4"
    cpu_limit: str = "8"
    memory_request: str = "32Gi"
    memory_limit: str = "64Gi"
    gpus: int = 1
    gpu_type: str = "nvidia.com/gpu"
    timeout_seconds: int = 24 * 3600
    nodes: int = 1  # > 1: the task launches a TrainJob of this many nodes with `gpus` GPUs each


def _times(quantity: str, n: int) -> str:
    number, unit = re.fullmatch(r"(\d+)(m|Mi|Gi)?", quantity).groups()
    return f"{int(number) * n}{unit or ''}"


def per_pod(res: StageResources) -> StageResources:
    """`res` with CPU and memory for all of its GPUs (one set on a CPU-only pod)."""
    n = max(res.gpus, 1)
    fields = ("cpu_request", "cpu_limit", "memory_request", "memory_limit")
    return replace(res, **{f: _times(getattr(res, f), n) for f in fields})


# What a TrainJob launcher pod asks for (the stages in DISTRIBUTED_STAGES, from their specs).
LAUNCHER = dict(cpu_request="500m", cpu_limit="2", memory_request="2Gi", memory_limit="8Gi")


def _default_resources() -> dict[str, StageResources]:
    """Each stage's `resources`, as its spec (`components/<stage>/spec.py`) declares them."""
    return {name: StageResources(**asdict(spec.resources)) for name, spec in SPECS.items()}


@dataclass
class ClusterSettings:
    """Everything about the cluster that the compiled pipeline carries.

    Secrets are referenced by name and injected as env vars; they are optional so a run
    without them still starts (public models need no HF token; W&B stays offline).
    """

    registry: str = DEFAULT_REGISTRY
    tag: str = DEFAULT_TAG
    # Dockerfile target -> pushed digest (sha256:...): images named by digest instead of the tag.
    digests: dict[str, str] = field(default_factory=dict)
    resources: dict[str, StageResources] = field(default_factory=_default_resources)
    # GPU node pool: applied to stages with gpus > 0. The label needs NVIDIA GPU Feature Discovery; without it
    # (GKE-managed drivers, EKS's plain device plugin) choose another: `rlhf compile --gpu-node-selector`.
    node_selector: dict[str, str] = field(default_factory=lambda: {"nvidia.com/gpu.present": "true"})
    tolerations: list[dict] = field(
        default_factory=lambda: [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    )
    # Secret name -> {secret key: env var}.
    secret_env: dict[str, dict[str, str]] = field(
        default_factory=lambda: {
            "rlhf-hf-token": {"token": "HF_TOKEN"},
            "rlhf-wandb": {"api-key": "WANDB_API_KEY"},
        }
    )
    # NCCL_* env for every pod with several GPUs and every TrainJob node (`rlhf compile --nccl`), e.g.
    # NCCL_SOCKET_IFNAME, NCCL_IB_HCA, NCCL_DEBUG.
    nccl_env: dict[str, str] = field(default_factory=dict)
    # Secrets (kubernetes.io/dockerconfigjson) for pulling the images: every pod and TrainJob node.
    image_pull_secrets: list[str] = field(default_factory=list)
    cache_pvc: str = "rlhf-model-cache"
    cache_mount_path: str = "/cache"
    # Argo retries a task only while now < first attempt's start + backoff maxDuration, and caps a
    # retry's deadline there: the window is every attempt's timeout plus the backoffs (retry_window).
    retries: int = 2
    backoff_seconds: int = 60
    backoff_factor: float = 2.0
    caching: bool = True
    run_as_user: int = 1000  # the `rlhf` user and group of images/Dockerfile
    run_as_group: int = 1000
    pod_labels: dict[str, str] = field(default_factory=lambda: {"app.kubernetes.io/part-of": "kubeflow-rlhf"})
    display_names: dict[str, str] = field(default_factory=lambda: dict(DISPLAY_NAMES))


def stage_image(settings: ClusterSettings, stage: str) -> str:
    digest = settings.digests.get(stage_of(stage))
    if digest:
        return f"{image_repository(stage_of(stage), settings.registry)}@{digest}"
    return image_for(stage, settings.registry, settings.tag)


def retry_window(settings: ClusterSettings, res: StageResources) -> int:
    """Seconds from a task's first start during which Argo may still retry it (backoff maxDuration)."""
    backoffs = sum(settings.backoff_seconds * settings.backoff_factor**i for i in range(settings.retries))
    return (settings.retries + 1) * (res.timeout_seconds or 7 * 24 * 3600) + int(backoffs)


def task_env(settings: ClusterSettings) -> dict[str, str]:
    """The env every task gets (and every TrainJob node)."""
    # Model and dataset downloads land on the PVC, shared by all stages and runs; checkpoints on the
    # PVC survive a preempted pod, and the retry resumes from them (kfrlhf.common.checkpoint).
    root = settings.cache_mount_path
    return {"HF_HOME": f"{root}/huggingface", "RLHF_CHECKPOINT_ROOT": f"{root}/checkpoints"}


def node_template(settings: ClusterSettings, stage: str) -> NodeTemplate:
    """What each node of `stage`'s TrainJob gets: the stage's own image, resources and pod settings."""
    res = per_pod(settings.resources[stage_of(stage)])
    return NodeTemplate(
        image=stage_image(settings, stage),
        cpu_request=res.cpu_request,
        cpu_limit=res.cpu_limit,
        memory_request=res.memory_request,
        memory_limit=res.memory_limit,
        gpus=res.gpus,
        gpu_type=res.gpu_type,
        node_selector=dict(settings.node_selector),
        tolerations=[dict(t) for t in settings.tolerations],
        secret_env={k: dict(v) for k, v in settings.secret_env.items()},
        env={**task_env(settings), **settings.nccl_env},
        pvc=settings.cache_pvc,
        mount_path=settings.cache_mount_path,
        run_as_user=settings.run_as_user,
        run_as_group=settings.run_as_group,
        labels=dict(settings.pod_labels),
        timeout_seconds=res.timeout_seconds,
        image_pull_secrets=list(settings.image_pull_secrets),
        launcher=res.nodes > 1,
    )


def make_configure(settings: ClusterSettings):
    """The `configure(task, stage)` hook that applies `settings` to one pipeline task."""

    def configure(task: PipelineTask, stage: str) -> PipelineTask:
        res = settings.resources[stage_of(stage)]
        pod = StageResources(**{**vars(res), **LAUNCHER, "gpus": 0}) if res.nodes > 1 else per_pod(res)
        task.set_container_image(stage_image(settings, stage))
        task.set_display_name(settings.display_names.get(stage, stage))
        task.set_cpu_request(pod.cpu_request).set_cpu_limit(pod.cpu_limit)
        task.set_memory_request(pod.memory_request).set_memory_limit(pod.memory_limit)
        if stage_of(stage) in DISTRIBUTED_STAGES:
            task.set_env_variable(TEMPLATE_ENV, node_template(settings, stage).to_env())
        if pod.gpus:
            task.set_accelerator_type(res.gpu_type).set_accelerator_limit(res.gpus)
            for key, value in settings.node_selector.items():
                kubernetes.add_node_selector(task, key, value)
            for tol in settings.tolerations:
                kubernetes.add_toleration(task, **tol)
        if settings.image_pull_secrets:
            kubernetes.set_image_pull_secrets(task, list(settings.image_pull_secrets))
        for secret, key_to_env in settings.secret_env.items():
            kubernetes.use_secret_as_env(task, secret, key_to_env, optional=True)
        kubernetes.mount_pvc(task, settings.cache_pvc, settings.cache_mount_path)
        for name, value in task_env(settings).items():
            task.set_env_variable(name, value)
        if pod.gpus > 1:  # one process per GPU, talking through NCCL
            kubernetes.empty_dir_mount(task, SHM_VOLUME, "/dev/shm", medium="Memory", size_limit=shm_size(pod.gpus))
            for name, value in settings.nccl_env.items():
                task.set_env_variable(name, value)
        # Which failures Argo retries is the cluster's retry policy: see manifests/components/argo-retry.
        task.set_retry(
            settings.retries,
            backoff_duration=f"{settings.backoff_seconds}s",
            backoff_factor=settings.backoff_factor,
            backoff_max_duration=f"{retry_window(settings, res)}s",
        )
        task.set_caching_options(settings.caching)
        if res.timeout_seconds:
            kubernetes.set_timeout(task, res.timeout_seconds)
        for key, value in settings.pod_labels.items():
            kubernetes.add_pod_label(task, key, value)
        # kfp-kubernetes 2.17 sets only these three; the KFP backend adds allowPrivilegeEscalation=false,
        # capabilities drop ALL and seccomp RuntimeDefault. readOnlyRootFilesystem cannot be expressed.
        kubernetes.set_security_context(
            task, run_as_user=settings.run_as_user, run_as_group=settings.run_as_group, run_as_non_root=True
        )
        return task

    # The GPU pool the promoted model's InferenceService lands on (the pipelines pass it to `promote`).
    configure.node_pool = {"node_selector": dict(settings.node_selector), "tolerations": list(settings.tolerations)}
    return configure
