"""The serve stage's config: how a model that passed the eval gate is promoted."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from kfrlhf.common.config import NON_NEGATIVE, ConfigError, StageConfig
from kfrlhf.common.k8s_syntax import OPTIONAL_DNS1123_SUBDOMAIN, QUALIFIED_NAME, QUANTITY

DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")


@dataclass
class ServeConfig(StageConfig):
    """Promotion of the tuned model once the gate passed.

    KServe: an `InferenceService` named `name` in `namespace` on the Hugging Face serving runtime
    `runtime`, asking for `gpus` x `gpu_type`, `cpu` and `memory`, on the pipeline's GPU node pool.
    It reads the model from `storage_uri` (empty: the tuned model artifact's URI; KFP's `minio://`
    is read as `s3://`) with the credentials of `service_account`. The manifest is always written
    as an artifact (for GitOps); `apply: true` also creates or updates it through the Kubernetes API.
    Model Registry: with `registry_url` (its REST endpoint, e.g.
    http://model-registry-service.kubeflow.svc.cluster.local:8080) the model is registered as
    `name`, version `version` (empty: the KFP run id), with the eval metrics as metadata.
    """

    section: ClassVar[str] = "serve"
    # Kubernetes' own syntax (kfrlhf.common.k8s_syntax): checked here, not by the cluster after the run.
    RULES: ClassVar[dict] = dict(
        gpus=NON_NEGATIVE,
        cpu=QUANTITY,
        memory=QUANTITY,
        gpu_type=QUALIFIED_NAME,
        service_account=OPTIONAL_DNS1123_SUBDOMAIN,
    )

    HELP: ClassVar[dict] = dict(
        name="the InferenceService's (and registered model's) name, a DNS label",
        namespace="the InferenceService's namespace",
        runtime="the KServe serving runtime",
        storage_uri="where KServe reads the model; empty: the tuned model artifact",
        service_account="the service account with the storage credentials",
        gpus="GPUs the InferenceService asks for",
        gpu_type="the GPU resource name",
        cpu="CPU the InferenceService asks for",
        memory="memory the InferenceService asks for",
        apply="create or update the InferenceService (false: manifest only)",
        registry_url="the Model Registry's REST endpoint; empty: not registered",
        registry_author="the registered version's author",
        version="the registered version; empty: the KFP run id",
    )

    name: str = "rlhf-policy"
    namespace: str = "kubeflow-rlhf"
    runtime: str = "kserve-huggingfaceserver"
    storage_uri: str = ""
    service_account: str = ""
    gpus: int = 1
    gpu_type: str = "nvidia.com/gpu"
    cpu: str = "4"
    memory: str = "32Gi"
    apply: bool = False
    registry_url: str = ""
    registry_author: str = "kubeflow-rlhf"
    version: str = ""

    def check(self) -> None:
        for key in ("name", "namespace"):
            if not DNS_LABEL.match(getattr(self, key)):
                raise ConfigError(f"serve.{key} must be a DNS label (a-z, 0-9, '-'), got {getattr(self, key)!r}")
        if self.registry_url and not self.registry_url.startswith(("http://", "https://")):
            raise ConfigError(f"serve.registry_url must start with http:// or https://, got {self.registry_url!r}")
