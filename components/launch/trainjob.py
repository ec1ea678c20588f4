"""The Kubeflow Trainer TrainJob (`trainer.kubeflow.org/v1alpha1`) a multi-node stage runs as.

The compiled pipeline hands each training task a `NodeTemplate` (env `RLHF_TRAINJOB_TEMPLATE`, JSON,
written by `kfrlhf.pipelines.cluster.platform`): what every node's pod of the job gets. It is the task's own
settings: its image, its resources scaled to the GPUs per node, the GPU node pool (node selector,
tolerations), the same secrets as env vars, the shared PVC (the model cache, which also holds the
job's inputs, outputs and checkpoints) with the same env, and the non-root security context.
At run time `with_launcher_pod` adds what the cluster gave the launching task's own pod: an overlay's
node pool and tolerations, image pull secrets, the run's service account.
`trainjob_manifest` builds the TrainJob on the `torch-distributed` ClusterTrainingRuntime: the
trainer (image, command, numNodes, numProcPerNode, resourcesPerNode, env) and one runtime patch for
what the trainer fields cannot say (pod labels, node selector, tolerations, pull secrets, service
account, volumes, security context).
`rlhf render-trainjob` prints it; tests validate it against the CRD.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import asdict, dataclass, field

TEMPLATE_ENV = "RLHF_TRAINJOB_TEMPLATE"
API_GROUP, API_VERSION, PLURAL = "trainer.kubeflow.org", "v1alpha1", "trainjobs"
NODE = "node"  # the torch-distributed runtime's replicated job and container
MANAGER = "kubeflow-rlhf.io/launcher"  # Trainer requires a domain-prefixed path (jobset plugin, IsDomainPrefixedPath)
CACHE_VOLUME = "model-cache"
# On every node's pod: the NetworkPolicy rlhf-trainjob-nodes lets the nodes reach each other.
NODE_LABEL = "kubeflow-rlhf/trainjob-node"
# Also on every node's pod: no Istio sidecar in a namespace with injection on (a Kubeflow profile). A
# classic sidecar keeps a Job's pod from completing and the NetworkPolicies do not allow for it; KFP marks
# its own pods the same way (kubeflow/pipelines 2.17.0
# backend/src/apiserver/template/v2_template.go:169-172).
NODE_ANNOTATIONS = {"sidecar.istio.io/inject": "false"}
SHM_VOLUME = "dshm"
SHM_GI_PER_PROCESS = 2  # /dev/shm for NCCL's shared-memory transport and data loaders (default 64 MiB)


def shm_size(processes: int) -> str:
    """The memory-backed /dev/shm of a pod running `processes` processes; it counts against its memory limit."""
    return f"{SHM_GI_PER_PROCESS * processes}Gi"


@dataclass
class NodeTemplate:
    """What each node of a stage's TrainJob gets (the stage's own pod settings)."""

    image: str
    cpu_request: str = "4"
    cpu_limit: str = "8"
    memory_request: str = "32Gi"
    memory_limit: str = "64Gi"
    gpus: int = 1
    gpu_type: str = "nvidia.com/gpu"
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict] = field(default_factory=list)
    secret_env: dict[str, dict[str, str]] = field(default_factory=dict)  # secret -> {key: env var}
    env: dict[str, str] = field(default_factory=dict)
    pvc: str = "rlhf-model-cache"
    mount_path: str = "/cache"
    run_as_user: int = 1000
    run_as_group: int = 1000
    labels: dict[str, str] = field(default_factory=dict)
    timeout_seconds: int = 0
    image_pull_secrets: list[str] = field(default_factory=list)
    service_account: str = ""  # empty: the namespace's default; at run time, the launcher pod's
    launcher: bool = False  # the task was compiled as a GPU-less launcher (`rlhf compile --nodes STAGE=N`)

    def to_env(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_env(cls) -> NodeTemplate:
        raw = os.environ.get(TEMPLATE_ENV)
        if not raw:
            raise RuntimeError(
                f"distributed.nodes > 1 needs a cluster: this task has no {TEMPLATE_ENV} "
                "(compile the pipeline with `rlhf compile`; kfp.local runs one node)"
            )
        return cls(**json.loads(raw))


def _toleration(t: dict) -> dict:
    """kfp-kubernetes' keyword form (toleration_seconds) in the Kubernetes form."""
    names = {"toleration_seconds": "tolerationSeconds"}
    return {names.get(k, k): v for k, v in t.items() if v is not None}


def with_launcher_pod(template: NodeTemplate, pod_spec: dict) -> NodeTemplate:
    """`template` with the scheduling the cluster gave the launching task's pod (`pod_spec` in the API's
    camelCase): its node selector and tolerations (an overlay's node pool), image pull secrets and
    service account. The tolerations the API server adds to every pod (node.kubernetes.io/...) are left out."""
    tolerations = [_toleration(t) for t in template.tolerations]
    for tol in pod_spec.get("tolerations") or []:
        if not tol.get("key", "").startswith("node.kubernetes.io/") and tol not in tolerations:
            tolerations.append(tol)
    secrets = [s["name"] for s in pod_spec.get("imagePullSecrets") or []]
    return dataclasses.replace(
        template,
        node_selector={**template.node_selector, **(pod_spec.get("nodeSelector") or {})},
        tolerations=tolerations,
        image_pull_secrets=sorted({*template.image_pull_secrets, *secrets}),
        service_account=pod_spec.get("serviceAccountName") or template.service_account,
    )


def _env(template: NodeTemplate) -> list[dict]:
    plain = [{"name": k, "value": v} for k, v in sorted(template.env.items())]
    secret = [
        {"name": env, "valueFrom": {"secretKeyRef": {"name": name, "key": key, "optional": True}}}
        for name, keys in sorted(template.secret_env.items())
        for key, env in sorted(keys.items())
    ]
    return plain + secret


def trainjob_manifest(
    name: str,
    namespace: str,
    template: NodeTemplate,
    nodes: int,
    processes_per_node: int,
    command: list[str],
    runtime: str = "torch-distributed",
    labels: dict[str, str] | None = None,
) -> dict:
    """The TrainJob of `nodes` nodes with `processes_per_node` processes each, running `command` on each node."""
    resources = {"cpu": template.cpu_request, "memory": template.memory_request}
    limits = {"cpu": template.cpu_limit, "memory": template.memory_limit}
    if template.gpus:
        resources[template.gpu_type] = limits[template.gpu_type] = str(template.gpus)
    pod = {
        "volumes": [{"name": CACHE_VOLUME, "persistentVolumeClaim": {"claimName": template.pvc}}],
        "securityContext": {
            "runAsUser": template.run_as_user,
            "runAsGroup": template.run_as_group,
            "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [
            {
                "name": NODE,
                "volumeMounts": [{"name": CACHE_VOLUME, "mountPath": template.mount_path}],
                "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
            }
        ],
    }
    if template.gpus:
        pod["nodeSelector"] = dict(template.node_selector)
        pod["tolerations"] = [_toleration(t) for t in template.tolerations]
    if processes_per_node > 1:
        pod["volumes"].append(
            {"name": SHM_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": shm_size(processes_per_node)}}
        )
        pod["containers"][0]["volumeMounts"].append({"name": SHM_VOLUME, "mountPath": "/dev/shm"})
    if template.image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": name} for name in template.image_pull_secrets]
    if template.service_account:
        pod["serviceAccountName"] = template.service_account
    node = {
        "metadata": {"labels": {**template.labels, NODE_LABEL: "true"}, "annotations": dict(NODE_ANNOTATIONS)},
        "spec": pod,
    }
    spec = {
        "runtimeRef": {"name": runtime, "kind": "ClusterTrainingRuntime", "apiGroup": API_GROUP},
        "trainer": {
            "image": template.image,
            "command": list(command),
            "numNodes": nodes,
            "numProcPerNode": processes_per_node,
            "resourcesPerNode": {"requests": resources, "limits": limits},
            "env": _env(template),
        },
        "runtimePatches": [
            {
                "manager": MANAGER,
                "trainingRuntimeSpec": {
                    "template": {"spec": {"replicatedJobs": [{"name": NODE, "template": {"spec": {"template": node}}}]}}
                },
            }
        ],
    }
    if template.timeout_seconds:
        spec["activeDeadlineSeconds"] = template.timeout_seconds
    metadata = {"name": name, "namespace": namespace, "labels": {**template.labels, **(labels or {})}}
    return {"apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": "TrainJob", "metadata": metadata, "spec": spec}
