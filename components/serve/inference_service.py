"""The KServe InferenceService (serving.kserve.io/v1beta1) that serves a promoted model.

The Hugging Face serving runtime (`kserve-huggingfaceserver`, model format `huggingface`) loads the
merged safetensors model from `storageUri`. The predictor asks for the configured GPUs on the
pipeline's GPU node pool (its node selector and tolerations) and runs non-root with the settings
Pod Security `restricted` requires.
"""

from __future__ import annotations

from .config import ServeConfig

# KServe copies these labels to the predictor pods: not `part-of: kubeflow-rlhf`, which the stage pods'
# NetworkPolicy (no ingress) selects.
MANAGED_BY = {"app.kubernetes.io/managed-by": "kubeflow-rlhf"}
# The Model Registry's KServe integration links a served model to its registry entry by these labels.
REGISTERED_MODEL_LABEL = "modelregistry.kubeflow.org/registered-model-id"
MODEL_VERSION_LABEL = "modelregistry.kubeflow.org/model-version-id"


def storage_uri(artifact_uri: str) -> str:
    """KFP names its MinIO/SeaweedFS objects minio://bucket/key; KServe's storage initializer reads S3 as s3://."""
    return "s3://" + artifact_uri.removeprefix("minio://") if artifact_uri.startswith("minio://") else artifact_uri


def _toleration(t: dict) -> dict:
    """A toleration from kfp-kubernetes' keyword form (toleration_seconds) in the Kubernetes form."""
    return {"tolerationSeconds" if k == "toleration_seconds" else k: v for k, v in t.items() if v is not None}


def inference_service(
    cfg: ServeConfig, model_uri: str, node_pool: dict, labels: dict | None = None, annotations: dict | None = None
) -> dict:
    """`node_pool`: {"node_selector": {...}, "tolerations": [...]}, the pipeline's GPU pool ({} for none)."""
    resources = {"cpu": cfg.cpu, "memory": cfg.memory}
    if cfg.gpus:
        resources[cfg.gpu_type] = str(cfg.gpus)
    model = {
        "modelFormat": {"name": "huggingface"},
        "runtime": cfg.runtime,
        "storageUri": cfg.storage_uri or storage_uri(model_uri),
        "args": [f"--model_name={cfg.name}"],
        "resources": {"requests": dict(resources), "limits": dict(resources)},
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }
    predictor = {
        "model": model,
        "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
    }
    if cfg.service_account:
        predictor["serviceAccountName"] = cfg.service_account
    if cfg.gpus and node_pool.get("node_selector"):
        predictor["nodeSelector"] = dict(node_pool["node_selector"])
    if cfg.gpus and node_pool.get("tolerations"):
        predictor["tolerations"] = [_toleration(t) for t in node_pool["tolerations"]]
    metadata = {"name": cfg.name, "namespace": cfg.namespace, "labels": {**MANAGED_BY, **(labels or {})}}
    if annotations:
        metadata["annotations"] = dict(annotations)
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": metadata,
        "spec": {"predictor": predictor},
    }


def apply(isvc: dict) -> str:
    """Create the InferenceService, or update it when it exists; 'created' or 'updated'.

    In a pod: the service account's token (needs get/create/patch on inferenceservices, manifests/base/rbac.yaml);
    elsewhere: the kubeconfig."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    api, meta = client.CustomObjectsApi(), isvc["metadata"]
    where = dict(group="serving.kserve.io", version="v1beta1", namespace=meta["namespace"], plural="inferenceservices")
    try:
        api.create_namespaced_custom_object(body=isvc, **where)
        return "created"
    except client.ApiException as err:
        if err.status != 409:
            raise
    api.patch_namespaced_custom_object(name=meta["name"], body=isvc, **where)
    return "updated"
