"""Promote a model that passed the eval gate: Model Registry entry and KServe InferenceService.

Reads the gated report (its `models.tuned` is the tuned model artifact's URI, recorded by eval),
registers the model when `serve.registry_url` is set, writes `inference_service.yaml` (for GitOps)
and `promotion.json` to the output directory, and with `serve.apply` creates or updates the
InferenceService in the cluster.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from kfrlhf.common.atomic import atomic_dir
from kfrlhf.common.config import from_dict

from .config import ServeConfig
from .inference_service import MODEL_VERSION_LABEL, REGISTERED_MODEL_LABEL, apply, inference_service
from .model_registry import register


def run(serve: dict, report_dir: str, node_pool: dict, output_dir: str, run_id: str) -> dict:
    """The stage on directories; `run_id` names the registered version unless `serve.version` does."""
    cfg = from_dict(ServeConfig, serve, "serve")
    report = json.loads((Path(report_dir) / "report.json").read_text())
    if not report.get("gate", {}).get("passed"):
        raise RuntimeError("promote: the eval gate did not pass; nothing is promoted")
    uri, version = report["models"]["tuned"], cfg.version or run_id
    result, labels = {"model_uri": uri, "version": version}, {}
    if cfg.registry_url:
        result["registry"] = register(cfg, uri, version, report)
        labels = {
            REGISTERED_MODEL_LABEL: result["registry"]["registered_model_id"],
            MODEL_VERSION_LABEL: result["registry"]["model_version_id"],
        }
    isvc = inference_service(cfg, uri, node_pool, labels, {"kubeflow-rlhf/model-version": version})
    result["inference_service"] = f"{cfg.namespace}/{cfg.name}"
    with atomic_dir(Path(output_dir)) as tmp:
        (tmp / "inference_service.yaml").write_text(yaml.safe_dump(isvc, sort_keys=False))
        if cfg.apply:
            result["applied"] = apply(isvc)
        (tmp / "promotion.json").write_text(json.dumps(result, indent=2))
    print(f"promoted {uri} as {result['inference_service']} version {version}: {json.dumps(result)}", flush=True)
    return result
