"""What a Kubeflow Trainer control plane says when a multi-node stage creates its TrainJob.

`../shared/tools/trainer-admit` runs Trainer's mutating and validating webhooks (every runtime plugin),
the CRD pruning and defaulting, and with `--jobset` the JobSet the TrainJob controller builds from it
through JobSet's own webhooks: upstream's code, offline (its README). It does not check the schema's
values, so every TrainJob is also validated against the CRD (tests/upstream/crds, always run; the
admission tests skip with the reason where ../shared is missing). All TrainJobs go through one call:
each shape renders into a namespace of its own, so the jobs keep the names the stages give them.
"""

from __future__ import annotations

import itertools
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

from kfrlhf.launch import trainjob
from kfrlhf.launch.config import DistributedConfig
from kfrlhf.launch.trainjob import NODE, NODE_ANNOTATIONS, NODE_LABEL, with_launcher_pod
from kfrlhf.launch.trainjob_run import build_trainjob, job_name, workdir_of, workflow_owners
from kfrlhf.pipelines.cluster.cli import render_trainjob
from kfrlhf.pipelines.cluster.platform import ClusterSettings, node_template
from kfrlhf.pipelines.definitions.stages import DISTRIBUTED_STAGES, ENTRY_POINTS
from tests.conftest import CRDS, SHARED, needs
from tests.test_manifests import _strict

ADMIT = SHARED / "tools" / "trainer-admit" / "trainer-admit"
RUNTIME = CRDS / "kubeflow-trainer" / "runtime-torch-distributed.manifest.yaml"
CRD = CRDS / "kubeflow-trainer" / "trainer.kubeflow.org_trainjobs.yaml"
NODES, GPUS = (1, 2, 4, 8), (1, 8)
WORKFLOW = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "name": "rlhf-x7k2p", "uid": "0c1d"}
NEEDS_ADMIT = needs(ADMIT, "trainer-admit (Kubeflow Trainer's and JobSet's admission webhooks, built from upstream)")


def admit(jobs: list[dict], tmp_path: Path) -> tuple[int, dict[str, str], list[dict]]:
    """trainer-admit --jobset on `jobs` with the torch-distributed runtime: (exit status,
    'KIND namespace/name' -> verdict, the defaulted JobSets)."""
    path = tmp_path / "trainjobs.yaml"
    path.write_text(yaml.safe_dump_all(jobs))
    out = subprocess.run([str(ADMIT), "--jobset", str(path), str(RUNTIME)], capture_output=True, text=True, timeout=60)
    jobsets = [d for d in yaml.safe_load_all(out.stdout) if d]
    # Verdict lines name an object without its namespace: pair them in order with the input jobs.
    lines = [line for line in out.stderr.splitlines() if line.startswith(("TrainJob ", "JobSet "))]
    verdicts, queue = {}, iter(jobs)
    for line in lines:
        kind, rest = line.split(" ", 1)
        name, verdict = rest.split(": ", 1)
        if kind == "TrainJob":
            job = next(queue)
            assert job["metadata"]["name"] == name, out.stderr
        verdicts[f"{kind} {job['metadata']['namespace']}/{name}"] = verdict
    return out.returncode, verdicts, jobsets


def full_options_job(stage: str) -> dict:
    """`stage` at 2 nodes of 8 GPUs with every optional part: pull secrets, a node pool and its
    tolerations (one with tolerationSeconds), NCCL env, /dev/shm, the launcher pod's service account,
    the run's Workflow as owner."""
    settings = ClusterSettings(
        image_pull_secrets=["rlhf-registry", "mirror"],
        node_selector={"node-pool": "rlhf-gpu", "nvidia.com/gpu.present": "true"},
        nccl_env={"NCCL_SOCKET_IFNAME": "eth0", "NCCL_IB_HCA": "mlx5"},
    )
    settings.tolerations.append(
        {"key": "dedicated", "operator": "Equal", "value": "rlhf-gpu", "effect": "NoExecute", "toleration_seconds": 60}
    )
    settings.resources[stage].gpus = 8
    launcher_pod = {
        "metadata": {"ownerReferences": [{**WORKFLOW, "controller": True, "blockOwnerDeletion": True}]},
        "spec": {
            "serviceAccountName": "rlhf-pipeline-runner",
            "imagePullSecrets": [{"name": "from-the-pod"}],
            "tolerations": [{"key": "spot", "operator": "Exists", "effect": "NoSchedule"}],
        },
    }
    template = with_launcher_pod(node_template(settings, stage), launcher_pod["spec"])
    dist = DistributedConfig(nodes=2)
    output = f"/{stage}/output"
    workdir = workdir_of(template, output)
    job = build_trainjob(ENTRY_POINTS[stage], stage, dist, template, workdir, job_name(stage, output), "full")
    job["metadata"]["ownerReferences"] = workflow_owners(launcher_pod)  # as run_trainjob does
    return job


@pytest.fixture(scope="module")
def jobs() -> list[dict]:
    rendered = [
        render_trainjob(stage, nodes, gpus, namespace=f"n{nodes}-g{gpus}")
        for stage, nodes, gpus in itertools.product(DISTRIBUTED_STAGES, NODES, GPUS)
    ]
    return rendered + [full_options_job(stage) for stage in DISTRIBUTED_STAGES]


@pytest.fixture(scope="module")
def admitted(jobs, tmp_path_factory) -> tuple[int, dict[str, str], list[dict]]:
    return admit(jobs, tmp_path_factory.mktemp("admit"))


def test_every_stage_at_every_shape_validates_against_the_crd(jobs):
    (crd,) = [d for d in yaml.safe_load_all(CRD.read_text()) if d]
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    validator = jsonschema.Draft7Validator(_strict(version["schema"]["openAPIV3Schema"]))
    assert len(jobs) == len(DISTRIBUTED_STAGES) * (len(NODES) * len(GPUS) + 1)
    for job in jobs:
        validator.validate(job)


@NEEDS_ADMIT
def test_trainer_admits_every_trainjob_and_jobset_admits_what_it_makes(jobs, admitted):
    status, verdicts, jobsets = admitted
    for job in jobs:
        where = f"{job['metadata']['namespace']}/{job['metadata']['name']}"
        assert verdicts.get(f"TrainJob {where}") == "admitted", verdicts.get(f"TrainJob {where}")
        assert verdicts.get(f"JobSet {where}") == "admitted", verdicts.get(f"JobSet {where}")
    assert status == 0 and len(jobsets) == len(jobs)


@NEEDS_ADMIT
def test_the_jobsets_run_the_shapes_asked_for_with_the_node_pods_labels_and_annotations(jobs, admitted):
    _, _, jobsets = admitted
    for job, jobset in zip(jobs, jobsets):
        assert jobset["metadata"]["name"] == job["metadata"]["name"]
        (replicated,) = jobset["spec"]["replicatedJobs"]
        spec = replicated["template"]["spec"]
        assert replicated["name"] == NODE
        assert spec["parallelism"] == spec["completions"] == job["spec"]["trainer"]["numNodes"]
        pod = spec["template"]
        assert pod["metadata"]["labels"][NODE_LABEL] == "true"  # the NetworkPolicy between nodes
        assert NODE_ANNOTATIONS.items() <= pod["metadata"]["annotations"].items()
        # JobSet's defaulting webhook: a failed rank restarts in place (what the watcher must notice).
        assert pod["spec"]["restartPolicy"] == "OnFailure"
        (container,) = pod["spec"]["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["PET_NPROC_PER_NODE"] == str(job["spec"]["trainer"]["numProcPerNode"])


@NEEDS_ADMIT
def test_the_full_options_reach_the_admitted_jobset(jobs, admitted):
    _, _, jobsets = admitted
    full = [j for j in jobsets if j["metadata"]["namespace"] == "full"]
    assert len(full) == len(DISTRIBUTED_STAGES)
    for jobset in full:
        pod = jobset["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]
        assert pod["imagePullSecrets"] == [{"name": n} for n in ("from-the-pod", "mirror", "rlhf-registry")]
        assert pod["nodeSelector"] == {"node-pool": "rlhf-gpu", "nvidia.com/gpu.present": "true"}
        assert {"key": "dedicated", "operator": "Equal", "value": "rlhf-gpu", "effect": "NoExecute"}.items() <= next(
            t for t in pod["tolerations"] if t["key"] == "dedicated"
        ).items()
        assert [t["key"] for t in pod["tolerations"]] == ["nvidia.com/gpu", "dedicated", "spot"]
        assert pod["serviceAccountName"] == "rlhf-pipeline-runner"
        assert {v["name"]: v for v in pod["volumes"]}["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "16Gi"}
        env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
        assert env["NCCL_SOCKET_IFNAME"] == "eth0" and env["PET_NNODES"] == "2"
    for job in jobs:
        if job["metadata"]["namespace"] == "full":
            assert job["metadata"]["ownerReferences"] == [WORKFLOW]


@NEEDS_ADMIT
def test_a_manager_without_a_domain_is_denied(jobs, tmp_path, monkeypatch):
    """The tool denies what Trainer's webhook denies (the jobset plugin's IsDomainPrefixedPath), so the
    admissions above are not vacuous."""
    monkeypatch.setattr(trainjob, "MANAGER", "kubeflow-rlhf")
    job = render_trainjob("ppo", 2, 8)
    status, verdicts, _ = admit([job], tmp_path)
    (verdict,) = verdicts.values()
    assert status == 1 and 'spec.runtimePatches.manager: Invalid value: "kubeflow-rlhf"' in verdict, verdict
    assert "must be a domain-prefixed path" in verdict


@NEEDS_ADMIT
def test_a_job_without_its_runtime_installed_is_denied(tmp_path):
    """What docs/cluster.md's prerequisites prevent: Trainer's webhook refuses a TrainJob whose
    ClusterTrainingRuntime is not installed."""
    job = render_trainjob("ppo", 2, 8)
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    out = subprocess.run([str(ADMIT), str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "must be created before the TrainJob is created" in out.stdout + out.stderr


def test_the_shapes_differ_where_they_should(jobs):
    """The rendered jobs are what their shapes say (guards against the same job rendered N times)."""
    shapes = {(j["metadata"]["namespace"], j["metadata"]["name"]) for j in jobs}
    assert len(shapes) == len(jobs)
    by_ns = {j["metadata"]["namespace"]: j for j in jobs if j["metadata"]["name"].startswith("rlhf-ppo-")}
    assert by_ns["n8-g8"]["spec"]["trainer"]["numNodes"] == 8
    assert by_ns["n1-g1"]["spec"]["trainer"]["numProcPerNode"] == 1
