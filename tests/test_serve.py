"""Promotion and generation without a cluster: the InferenceService against the KServe CRD, the Model
Registry call against a loopback fake of its REST API, applying through a loopback Kubernetes API,
and `rlhf generate` on a saved model and a run directory."""

from __future__ import annotations

import functools
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jsonschema
import pytest
import yaml

from kfrlhf.common.config import ConfigError, from_dict
from kfrlhf.pipelines.cli import main
from kfrlhf.pipelines.cluster.platform import ClusterSettings, make_configure
from kfrlhf.pipelines.local.generate import read_prompts
from kfrlhf.serve.config import ServeConfig
from kfrlhf.serve.inference_service import apply, inference_service
from kfrlhf.serve.stage import run as promote
from tests.conftest import CRDS
from tests.fake_http import reply_json
from tests.model_registry_fake import FakeModelRegistry
from tests.test_manifests import _strict

ROOT = Path(__file__).resolve().parents[1]
CRD = CRDS / "kserve" / "serving.kserve.io_inferenceservices.yaml"
POOL = make_configure(ClusterSettings()).node_pool
REPORT = {"reward_gain": 1.3, "reward_gain_stderr": 0.2, "kl": 3.4, "win_rate": 0.86, "reward_accuracy": 1.0}
GATED = {**REPORT, "gate": {"passed": True, "checks": [], "reasons": []}, "samples": []}
MODEL_URI = "minio://mlpipeline/v2/artifacts/rlhf/run-1/merge-onto/123/model"


@functools.cache
def isvc_validator() -> jsonschema.Draft7Validator:
    """The CRD's v1beta1 schema (not checked against the metaschema: that takes half a minute)."""
    for crd in yaml.load_all(CRD.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
        if crd and crd["spec"]["names"]["kind"] == "InferenceService":
            (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1beta1"]
            return jsonschema.Draft7Validator(_strict(version["schema"]["openAPIV3Schema"]))
    raise AssertionError(f"no InferenceService v1beta1 in {CRD}")


def assert_valid_isvc(isvc: dict) -> None:
    """Valid against the CRD (unknown fields rejected, as the API server's strict validation does)."""
    isvc_validator().validate(isvc)
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1" and isvc["kind"] == "InferenceService"
    assert isvc["spec"]["predictor"]["model"]["modelFormat"] == {"name": "huggingface"}


def test_the_inference_service_validates_against_the_kserve_crd():
    isvc = inference_service(ServeConfig(), MODEL_URI, POOL, {"extra": "label"}, {"note": "x"})
    assert_valid_isvc(isvc)
    predictor = isvc["spec"]["predictor"]
    model = predictor["model"]
    assert model["runtime"] == "kserve-huggingfaceserver"
    assert model["storageUri"] == "s3://mlpipeline/v2/artifacts/rlhf/run-1/merge-onto/123/model"
    assert model["resources"]["limits"] == {"cpu": "4", "memory": "32Gi", "nvidia.com/gpu": "1"}
    assert model["resources"]["requests"] == model["resources"]["limits"]
    # The pipeline's GPU pool, and what Pod Security `restricted` asks of the pod.
    assert predictor["nodeSelector"] == ClusterSettings().node_selector
    assert predictor["tolerations"] == ClusterSettings().tolerations
    assert predictor["securityContext"]["runAsNonRoot"] is True
    assert predictor["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert model["securityContext"] == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    # Not the stage pods' label: their NetworkPolicy admits no ingress, and KServe copies labels to its pods.
    assert isvc["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "kubeflow-rlhf", "extra": "label"}


def test_cpu_serving_and_own_storage():
    cfg = ServeConfig(gpus=0, storage_uri="pvc://models/policy", service_account="sa-s3", name="p2")
    isvc = inference_service(cfg, MODEL_URI, POOL)
    assert_valid_isvc(isvc)
    predictor = isvc["spec"]["predictor"]
    assert "nodeSelector" not in predictor and "tolerations" not in predictor  # no GPU: no GPU pool
    assert predictor["model"]["storageUri"] == "pvc://models/policy" and predictor["serviceAccountName"] == "sa-s3"
    assert "nvidia.com/gpu" not in predictor["model"]["resources"]["limits"]


@pytest.mark.parametrize(
    "values", [{"name": "Policy_1"}, {"namespace": "-x"}, {"gpus": -1}, {"registry_url": "registry:8080"}]
)
def test_bad_serve_config_is_refused(values):
    with pytest.raises(ConfigError):
        from_dict(ServeConfig, values, "serve")


def test_registry_call_and_manifest(tmp_path, monkeypatch):
    """What the model-registry client sends: the registered model, the version with the eval metrics as
    metadata, the model artifact with its URI and format; the service-account token as bearer."""
    report_dir = tmp_path / "report"
    report_dir.mkdir()
    (report_dir / "report.json").write_text(json.dumps({**GATED, "models": {"tuned": MODEL_URI}}))
    token = tmp_path / "token"
    token.write_text("sa-token-123")
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(token))
    with FakeModelRegistry() as fake:
        serve = {"registry_url": fake.url, "name": "tuned-opt"}
        result = promote(serve, str(report_dir), POOL, str(tmp_path / "out"), "run-42")
    (model,) = fake.sent("POST", "/registered_models")
    assert model["name"] == "tuned-opt" and model["owner"] == "kubeflow-rlhf"
    (version,) = fake.sent("POST", "/model_versions")
    assert version["name"] == "run-42" and version["registeredModelId"] == model_id(fake)
    props = version["customProperties"]
    assert props["reward_gain"] == {"double_value": 1.3, "metadataType": "MetadataDoubleValue"}
    assert props["win_rate"]["double_value"] == 0.86 and props["kl"]["double_value"] == 3.4
    assert props["gate_passed"] == {"bool_value": True, "metadataType": "MetadataBoolValue"}
    (artifact,) = [r["body"] for r in fake.requests if r["path"].endswith("/artifacts")]
    assert artifact["uri"] == MODEL_URI and artifact["artifactType"] == "model-artifact"
    assert (artifact["modelFormatName"], artifact["modelFormatVersion"]) == ("huggingface", "1")
    assert {r["authorization"] for r in fake.requests} == {"Bearer sa-token-123"}
    # The manifest links the served model to its registry entry.
    isvc = yaml.safe_load((tmp_path / "out" / "inference_service.yaml").read_text())
    assert_valid_isvc(isvc)
    labels = isvc["metadata"]["labels"]
    assert labels["modelregistry.kubeflow.org/registered-model-id"] == result["registry"]["registered_model_id"]
    assert labels["modelregistry.kubeflow.org/model-version-id"] == result["registry"]["model_version_id"]
    assert json.loads((tmp_path / "out" / "promotion.json").read_text()) == result
    assert "applied" not in result


def model_id(fake: FakeModelRegistry) -> str:
    return fake.objects["registered_models"][0]["id"]


def test_promote_refuses_a_report_that_failed_the_gate(tmp_path):
    (tmp_path / "report.json").write_text(json.dumps({**GATED, "gate": {"passed": False}, "models": {"tuned": "x"}}))
    with pytest.raises(RuntimeError, match="did not pass"):
        promote({}, str(tmp_path), POOL, str(tmp_path / "out"), "run")
    assert not (tmp_path / "out").exists()


class FakeKubernetes(BaseHTTPRequestHandler):
    """The Kubernetes API for one custom resource: create (409 once it exists) and merge patch."""

    objects: dict = {}
    calls: list = []

    def _reply(self, status: int, body: dict):
        reply_json(self, status, body)

    def _body(self) -> dict:
        return json.loads(self.rfile.read(int(self.headers["Content-Length"])))

    def do_POST(self):  # noqa: N802
        body = self._body()
        self.calls.append(("POST", self.path, self.headers["Content-Type"], body))
        if body["metadata"]["name"] in self.objects:
            return self._reply(409, {"kind": "Status", "reason": "AlreadyExists", "code": 409})
        self.objects[body["metadata"]["name"]] = body
        self._reply(201, body)

    def do_PATCH(self):  # noqa: N802
        body = self._body()
        self.calls.append(("PATCH", self.path, self.headers["Content-Type"], body))
        self._reply(200, body)

    def log_message(self, *args):
        pass


def test_apply_creates_then_updates_with_the_verbs_the_role_grants(tmp_path, monkeypatch):
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeKubernetes)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "fake", "cluster": {"server": url}}],
        "users": [{"name": "fake", "user": {"token": "t"}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
        "current-context": "fake",
    }
    (tmp_path / "kubeconfig").write_text(yaml.safe_dump(kubeconfig))
    from kubernetes.config import kube_config

    # KUBECONFIG is read when kubernetes is imported: point its default at the fake instead.
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(tmp_path / "kubeconfig"))
    isvc = inference_service(ServeConfig(), MODEL_URI, POOL)
    try:
        assert apply(isvc) == "created"
        assert apply(isvc) == "updated"
    finally:
        server.shutdown()
        server.server_close()
    collection = "/apis/serving.kserve.io/v1beta1/namespaces/kubeflow-rlhf/inferenceservices"
    assert [(m, p) for m, p, _, _ in FakeKubernetes.calls] == [
        ("POST", collection),
        ("POST", collection),
        ("PATCH", f"{collection}/rlhf-policy"),
    ]
    assert FakeKubernetes.calls[2][2] == "application/merge-patch+json" and FakeKubernetes.calls[2][3] == isvc
    # manifests/base/rbac.yaml lets the run's service account do exactly this.
    role = next(d for d in yaml.safe_load_all((ROOT / "manifests/base/rbac.yaml").read_text()) if d["kind"] == "Role")
    (rule,) = [r for r in role["rules"] if r["apiGroups"] == ["serving.kserve.io"]]
    assert rule["resources"] == ["inferenceservices"] and {"create", "patch"} <= set(rule["verbs"])


def test_a_prompt_file_row_without_a_prompt_is_refused(tmp_path, capsys):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "Hi?"}\n{"text": "Why?"}\n')
    assert main(["generate", "--model", str(tmp_path), "--prompts", str(prompts)]) == 2
    assert "neither a run directory" in capsys.readouterr().err
    with pytest.raises(ValueError, match="row 2: expected a `prompt` or `question` string"):
        read_prompts(prompts)


def test_generate_streams_one_answer_and_writes_jsonl(tiny_lm_dir, tmp_path, capsys):
    assert main(["generate", "--model", str(tiny_lm_dir), "--prompt", "How are you?", "max_new_tokens=6"]) == 0
    assert capsys.readouterr().out.strip()
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "Hi?"}\n{"question": "Why?"}\n')
    args = ["generate", "--model", str(tiny_lm_dir), "--prompts", str(prompts)]
    assert main([*args, "max_new_tokens=4", "num_beams=2", "do_sample=true", "top_k=10", "temperature=0.6"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["prompt"] for r in rows] == ["Hi?", "Why?"] and all(isinstance(r["answer"], str) for r in rows)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["max_new_tokenz=4"], "max_new_tokenz is not a transformers.GenerationConfig field"),
        (["do_sample=false", "temperature=0.5"], "GenerationConfig is invalid"),
        (["--compare"], "--compare needs a run directory"),
    ],
)
def test_generate_refuses_bad_options(tiny_lm_dir, capsys, extra, message):
    assert main(["generate", "--model", str(tiny_lm_dir), "--prompt", "Hi?", *extra]) == 2
    assert message in capsys.readouterr().err


def test_generate_compare_on_a_run_directory(tiny_lm_dir, reward_dir, tmp_path, capsys):
    """A run directory as `rlhf run` leaves it: report.json names the models, config.yaml the template."""
    run = tmp_path / "run"
    run.mkdir()
    models = {"sft": tiny_lm_dir, "tuned": tiny_lm_dir, "reward": reward_dir[0].parent}
    (run / "report.json").write_text(json.dumps({"models": {k: str(v) for k, v in models.items()}}))
    (run / "config.yaml").write_text(yaml.safe_dump({"data": {"template": "Q: {question}\nA: "}}))
    assert main(["generate", "--model", str(run), "--prompt", "Is tea good?", "--compare", "max_new_tokens=6"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("SFT (reward ") and "| tuned (reward " in out
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Is tea good?\nWhy?\n")
    assert main(["generate", "--model", str(run), "--prompts", str(prompts), "--compare", "max_new_tokens=6"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["prompt"] for r in rows] == ["Is tea good?", "Why?"]
    # Same model, same seed: the same answers and rewards on both sides.
    assert all(r["sft"] == r["tuned"] and r["reward_sft"] == r["reward_tuned"] for r in rows)
