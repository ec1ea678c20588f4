"""A kfp.local run whose eval gate passes: promotion registers the tuned model (loopback fake of the
Model Registry) and writes the InferenceService manifest; then `rlhf generate` answers from the run's
output, alone and `--compare`d with the SFT model. (A run whose gate fails: tests/test_dpo.py.)"""

import json

import yaml

from kfrlhf.pipelines.cli import main
from tests.model_registry_fake import FakeModelRegistry
from tests.test_pipeline import FAST
from tests.test_serve import assert_valid_isvc

OPEN_GATE = [
    "gate.min_gain_stderrs=-1e6",
    "gate.max_kl=1e9",
    "gate.min_win_rate=0",
    "gate.min_reward_margin_stderrs=-1e6",
]


def test_gate_passes_promotes_and_generate_answers(tmp_path, capfd):
    out = tmp_path / "run"
    with FakeModelRegistry() as registry:
        args = ["run", "--output", str(out), "--report-to", "none"]
        for item in FAST + OPEN_GATE + [f"serve.registry_url={registry.url}", "serve.name=tiny-policy"]:
            args += ["--set", item]
        assert main(args) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["gate"]["passed"] and report["gate"]["reasons"] == []
    assert "eval gate passed" in capfd.readouterr().out
    # Registered: the tuned model's artifact, the eval metrics as the version's metadata.
    (version,) = registry.sent("POST", "/model_versions")
    assert version["customProperties"]["win_rate"]["double_value"] == report["win_rate"]
    (artifact,) = [r["body"] for r in registry.requests if r["path"].endswith("/artifacts")]
    tuned = out / report["models"]["tuned"]
    assert artifact["uri"] == str(tuned) and (tuned / "model.safetensors").exists()
    # The InferenceService manifest, for GitOps, linked to the registry entry.
    isvc = yaml.safe_load((out / "inference_service.yaml").read_text())
    assert_valid_isvc(isvc)
    assert isvc["metadata"]["name"] == "tiny-policy" and isvc["spec"]["predictor"]["model"]["storageUri"] == str(tuned)
    assert (
        isvc["metadata"]["labels"]["modelregistry.kubeflow.org/model-version-id"]
        == registry.objects["model_versions"][0]["id"]
    )
    assert report["promotion"]["inference_service"] == "kubeflow-rlhf/tiny-policy"

    # `rlhf generate` on the run directory: the tuned model, then SFT vs tuned with rewards.
    assert main(["generate", "--model", str(out), "--prompt", "How do I make tea?", "max_new_tokens=8"]) == 0
    assert capfd.readouterr().out.strip()
    assert main(["generate", "--model", str(out), "--prompt", "How do I make tea?", "--compare"]) == 0
    printed = capfd.readouterr().out
    assert printed.startswith("SFT (reward ") and "| tuned (reward " in printed
