"""Register a promoted model with the Kubeflow Model Registry (its `model-registry` Python client).

One registered model (`serve.name`), one version per promotion, one model artifact with the model's
URI and format (`huggingface`, what KServe's Hugging Face runtime serves); the eval metrics and the
gate's decision are the version's metadata. The client authenticates with the pod's service-account
token (or the file named by KF_PIPELINES_SA_TOKEN_PATH).
"""

from __future__ import annotations

from kfrlhf.common.extras import require

from .config import ServeConfig

MODEL_FORMAT = ("huggingface", "1")


def version_metadata(report: dict) -> dict:
    """The eval report's numbers (and the gate's verdict) as registry custom properties (bool/int/float/str)."""
    out = {k: v for k, v in report.items() if isinstance(v, (bool, int, float, str))}
    out["gate_passed"] = bool(report.get("gate", {}).get("passed", False))
    return out


def register(cfg: ServeConfig, uri: str, version: str, report: dict) -> dict:
    """Register `uri` as version `version` of `cfg.name`; the registry's ids."""
    require("model_registry", "cluster", "serve.registry_url (the Kubeflow Model Registry client)")
    from model_registry import ModelRegistry

    registry = ModelRegistry(cfg.registry_url, author=cfg.registry_author)
    model = registry.register_model(
        cfg.name,
        uri,
        version=version,
        model_format_name=MODEL_FORMAT[0],
        model_format_version=MODEL_FORMAT[1],
        version_description="kubeflow-rlhf: tuned model that passed the eval gate",
        metadata=version_metadata(report),
    )
    model_version = registry.get_model_version(cfg.name, version)
    return {"registered_model_id": model.id, "model_version_id": model_version.id, "version": version}
