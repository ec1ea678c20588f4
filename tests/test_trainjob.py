"""Multi-node stages: the TrainJob `rlhf render-trainjob` prints validates against the Kubeflow Trainer
CRD; the pipeline compiled with a multi-node stage passes the KFP backend's compiler; the watcher
follows recorded API responses (tests/trainjob_api/) to success, to the job's failure, to a failed
pod, to a vanished pod and to a deleted TrainJob, through the `kubernetes` client against a
loopback fake of the API server."""

from __future__ import annotations

import functools
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import jsonschema
import pytest
import yaml

from kfrlhf.common.checkpoint import checkpoint_root
from kfrlhf.common.config import ConfigError
from kfrlhf.launch.launcher import entry_point
from kfrlhf.launch.trainjob import NodeTemplate, trainjob_manifest, with_launcher_pod
from kfrlhf.launch.trainjob_run import TrainJobFailed, TrainJobPreempted, TrainJobWatch, job_name, run_trainjob
from kfrlhf.pipelines.cli import main
from kfrlhf.pipelines.cluster import cli as cli_cluster
from kfrlhf.pipelines.cluster.compile import compile_pipeline
from kfrlhf.pipelines.cluster.platform import ClusterSettings, node_template
from tests.fake_http import reply_json
from tests.test_manifests import _strict
from tests.test_workflow import TOOL, _compile, _killed, _merge_defaults, _overlay_versions, argo_decides, stage_pods

ROOT = Path(__file__).resolve().parents[1]
CRD = ROOT.parent / "shared" / "crds" / "kubeflow-trainer" / "trainer.kubeflow.org_trainjobs.yaml"
RECORDED = Path(__file__).parent / "trainjob_api"
JOBS = "/apis/trainer.kubeflow.org/v1alpha1/namespaces/kubeflow-rlhf/trainjobs"
# The task's own pod (any name launcher-*) as a cluster with the gpu-cluster overlay runs it.
LAUNCHER = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "launcher-a", "namespace": "kubeflow-rlhf"},
    "spec": {
        "serviceAccountName": "rlhf-pipeline-runner",
        "nodeSelector": {"node-pool": "rlhf-gpu"},
        "tolerations": [
            {"key": "dedicated", "operator": "Equal", "value": "rlhf-gpu", "effect": "NoSchedule"},
            {
                "key": "node.kubernetes.io/not-ready",
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": 300,
            },
        ],
        "imagePullSecrets": [{"name": "rlhf-registry"}],
        "containers": [{"name": "main", "image": "ghcr.io/kubeflow-rlhf/kubeflow-rlhf-ppo:0.1.0"}],
    },
    "status": {"phase": "Running"},
}


@pytest.fixture(scope="module")
def schema() -> dict:
    (crd,) = [d for d in yaml.safe_load_all(CRD.read_text()) if d]
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    return _strict(version["schema"]["openAPIV3Schema"])


@pytest.mark.parametrize("nodes", [1, 2, 4])
def test_rendered_trainjob_validates_against_the_crd(nodes, schema, tmp_path, capsys):
    config = tmp_path / "scale.yaml"
    config.write_text("ppo:\n  distributed:\n    processes_per_node: 4\n")
    assert main(["render-trainjob", "--stage", "ppo", "--nodes", str(nodes), "--gpus-per-node", "8"]) == 0
    job = yaml.safe_load(capsys.readouterr().out)
    jsonschema.validate(job, schema)
    trainer = job["spec"]["trainer"]
    assert trainer["numNodes"] == nodes and trainer["numProcPerNode"] == 8  # processes_per_node 0: one per GPU
    assert trainer["resourcesPerNode"]["limits"]["nvidia.com/gpu"] == "8"
    assert trainer["command"][:5] == ["python", "-m", "kfrlhf.launch.launcher", "node", "ppo"]
    assert {e["name"] for e in trainer["env"]} >= {"HF_TOKEN", "WANDB_API_KEY", "HF_HOME", "RLHF_CHECKPOINT_ROOT"}
    (patch,) = job["spec"]["runtimePatches"]
    pod = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]
    assert pod["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] == "rlhf-model-cache"
    assert pod["spec"]["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    args = ["render-trainjob", "--stage", "ppo", "--nodes", str(nodes), "--gpus-per-node", "8", "--config", str(config)]
    assert main(args) == 0
    job = yaml.safe_load(capsys.readouterr().out)
    jsonschema.validate(job, schema)
    assert job["spec"]["trainer"]["numProcPerNode"] == 4


# GPUs per node -> what each PPO node asks for: CPU and memory per GPU times the GPUs, /dev/shm per process.
PER_NODE = {
    1: ({"cpu": "4", "memory": "48Gi"}, {"cpu": "8", "memory": "96Gi"}, None),
    8: ({"cpu": "32", "memory": "384Gi"}, {"cpu": "64", "memory": "768Gi"}, "16Gi"),
}


def shm_of(pod: dict) -> str | None:
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for c in pod["containers"] for m in c["volumeMounts"]}
    if "/dev/shm" not in mounts:
        return None
    empty = volumes[mounts["/dev/shm"]]["emptyDir"]
    assert empty["medium"] == "Memory"
    return empty["sizeLimit"]


@pytest.mark.parametrize("nodes, gpus", [(1, 1), (1, 8), (2, 8)])
def test_each_node_asks_for_cpu_memory_and_shm_for_its_gpus(nodes, gpus, schema, capsys):
    assert main(["render-trainjob", "--stage", "ppo", "--nodes", str(nodes), "--gpus-per-node", str(gpus)]) == 0
    job = yaml.safe_load(capsys.readouterr().out)
    jsonschema.validate(job, schema)
    requests, limits, shm = PER_NODE[gpus]
    resources = job["spec"]["trainer"]["resourcesPerNode"]
    assert resources == {
        "requests": {**requests, "nvidia.com/gpu": str(gpus)},
        "limits": {**limits, "nvidia.com/gpu": str(gpus)},
    }
    assert shm_of(node_pod(job)["spec"]) == shm


@pytest.mark.skipif(not TOOL.exists(), reason=f"kfp-argo-compile not found at {TOOL}")
def test_a_multi_gpu_pod_asks_for_its_gpus_cpu_memory_shm_and_nccl_env(tmp_path):
    argv = ["compile", "--output", str(tmp_path), "--gpus", "ppo=8", "--nccl", "NCCL_SOCKET_IFNAME=eth0"]
    assert main(argv) == 0
    pods = stage_pods(_compile(tmp_path / "rlhf.yaml"))
    for label, gpus in (("exec-ppo", 8), ("exec-sft", 1)):
        container, k8s = pods[label]["container"], pods[label]["k8s"]
        requests, limits, shm = PER_NODE[gpus]
        if label == "exec-sft":
            requests, limits = {**requests, "memory": "32Gi"}, {**limits, "memory": "64Gi"}
        got = container["resources"]
        assert (got["resourceCpuRequest"], got["resourceMemoryRequest"]) == (requests["cpu"], requests["memory"])
        assert (got["resourceCpuLimit"], got["resourceMemoryLimit"]) == (limits["cpu"], limits["memory"])
        mounts = {m["mountPath"]: (m["medium"], m["sizeLimit"]) for m in k8s.get("emptyDirMounts", [])}
        assert mounts.get("/dev/shm") == (shm and ("Memory", shm)), label
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env.get("NCCL_SOCKET_IFNAME") == ("eth0" if gpus > 1 else None), label
        assert json.loads(env["RLHF_TRAINJOB_TEMPLATE"])["env"]["NCCL_SOCKET_IFNAME"] == "eth0"


def test_render_refuses_a_bad_distributed_section(tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("ppo:\n  distributed:\n    strategy: fsdp\n")
    assert main(["render-trainjob", "--stage", "ppo", "--nodes", "2", "--gpus-per-node", "8", "--config", str(config)])
    assert "ppo.distributed.strategy must be ddp" in capsys.readouterr().err


def test_render_names_the_entry_points_the_components_start():
    from kfrlhf.dpo.stage import run as run_dpo
    from kfrlhf.grpo.stage import run as run_grpo
    from kfrlhf.pipelines.cluster.platform import DISTRIBUTED_STAGES
    from kfrlhf.ppo.stage import run as run_ppo_stage
    from kfrlhf.reward.stage import run as run_reward
    from kfrlhf.sft.stage import run as run_sft

    functions = {"sft": run_sft, "reward": run_reward, "ppo": run_ppo_stage, "dpo": run_dpo, "grpo": run_grpo}
    assert cli_cluster.ENTRY_POINTS == {stage: entry_point(f) for stage, f in functions.items()}
    assert set(DISTRIBUTED_STAGES) == set(functions)
    for stage, function in functions.items():
        assert f"run_stage({function.__name__}" in (ROOT / "components" / stage / "component.py").read_text()


@pytest.mark.skipif(not TOOL.exists(), reason=f"kfp-argo-compile not found at {TOOL}")
def test_a_multi_node_stage_compiles_to_a_launcher_pod(tmp_path):
    settings = ClusterSettings()
    settings.resources["ppo"].nodes, settings.resources["ppo"].gpus = 2, 8
    ir_path, _ = compile_pipeline("rlhf", tmp_path, settings)
    ir = next(yaml.safe_load_all(ir_path.read_text()))
    assert ir["root"]["inputDefinitions"]["parameters"]["ppo"]["defaultValue"]["distributed"]["nodes"] == 2
    pods = stage_pods(_compile(ir_path))
    ppo, sft = pods["exec-ppo"], pods["exec-sft"]
    assert "accelerator" not in ppo["container"]["resources"] and not ppo["k8s"].get("nodeSelector")
    template = {e["name"]: e["value"] for e in ppo["container"]["env"]}["RLHF_TRAINJOB_TEMPLATE"]
    assert json.loads(template)["gpus"] == 8 and json.loads(template)["launcher"] is True
    assert sft["container"]["resources"]["accelerator"]["resourceCount"] == "1"  # the others are unchanged


# --- the watcher against recorded API responses --------------------------------------------------------


def stamp(i: int) -> str:
    """Line i's log timestamp: two lines a second, the kubelet's precision (trailing zeros cut) varying."""
    return f"2026-12-01T10:00:{i // 2:02d}.{'1' if i % 2 == 0 else '123456789'}Z"


class FakeTrainerAPI(BaseHTTPRequestHandler):
    """Replays one scenario: each GET of the TrainJob advances to the next round (the last repeats).
    The job exists once POSTed (or from the start when the scenario says `exists`, an earlier attempt's);
    a DELETE removes it and its pods. `stream_drops`: pod -> the lines its first log stream serves before
    it breaks off; `hold_until_log_requests`: pod -> how many log requests the last round waits for.
    `LAUNCHER` is the task's own pod; `on_create(body)` plays the nodes' part."""

    scenario: dict = {}
    calls: list = []
    bodies: list = []
    log_requests: dict = {}
    round = 0
    exists = False
    on_create = None

    def _current(self) -> dict:
        rounds = self.scenario["rounds"]
        return rounds[min(max(type(self).round - 1, 0), len(rounds) - 1)]

    def _held(self) -> bool:
        held = self.scenario.get("hold_until_log_requests", {})
        return any(self.log_requests.get(pod, 0) < n for pod, n in held.items())

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.calls.append(("POST", self.path))
        self.bodies.append(body)
        type(self).exists = True
        if self.on_create:
            type(self).on_create(body)
        reply_json(self, 201, body)

    def do_GET(self):  # noqa: N802
        url = urlparse(self.path)
        self.calls.append(("GET", url.path))
        if url.path.startswith(JOBS):
            if not self.exists:
                return reply_json(self, 404, {"kind": "Status", "code": 404})
            if not (self._held() and type(self).round >= len(self.scenario["rounds"]) - 1):
                type(self).round += 1
            job = self._current()["trainjob"]
            return reply_json(self, job.get("code", 200), job)
        if url.path.endswith("/log"):
            pod, query = url.path.split("/")[-2], parse_qs(url.query)
            self.calls.append(("LOG", pod, query.get("sinceSeconds", [None])[0]))
            lines = self.scenario["logs"][pod].splitlines()
            if not self.log_requests.get(pod) and pod in self.scenario.get("stream_drops", {}):
                lines = lines[: self.scenario["stream_drops"][pod]]
            self.log_requests[pod] = self.log_requests.get(pod, 0) + 1
            stamped = query.get("timestamps", [""])[0].lower() == "true"
            text = "".join(f"{stamp(i) + ' ' if stamped else ''}{line}\n" for i, line in enumerate(lines)).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            return self.wfile.write(text)
        if "/pods/launcher-" in url.path:
            name = url.path.rsplit("/", 1)[1]
            return reply_json(self, 200, {**LAUNCHER, "metadata": {**LAUNCHER["metadata"], "name": name}})
        pods = self._current()["pods"] if self.exists else {"kind": "PodList", "items": []}
        if "/pods/" in url.path:  # one pod
            name = url.path.rsplit("/", 1)[1]
            found = [p for p in pods["items"] if p["metadata"]["name"] == name]
            return reply_json(self, 200, found[0]) if found else reply_json(self, 404, {"kind": "Status", "code": 404})
        reply_json(self, 200, pods)

    def do_DELETE(self):  # noqa: N802
        self.calls.append(("DELETE", self.path))
        type(self).exists = False
        reply_json(self, 200, {"kind": "Status", "status": "Success"})

    def log_message(self, *args):
        pass


def serve(scenario: str, tmp_path, monkeypatch) -> ThreadingHTTPServer:
    """The fake API server replaying `scenario`, as the kubeconfig's cluster."""
    FakeTrainerAPI.scenario = json.loads((RECORDED / f"{scenario}.json").read_text())
    FakeTrainerAPI.calls, FakeTrainerAPI.bodies, FakeTrainerAPI.round, FakeTrainerAPI.log_requests = [], [], 0, {}
    FakeTrainerAPI.exists, FakeTrainerAPI.on_create = FakeTrainerAPI.scenario.get("exists", False), None
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeTrainerAPI)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "fake", "cluster": {"server": f"http://127.0.0.1:{server.server_address[1]}"}}],
        "users": [{"name": "fake", "user": {"token": "t"}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
        "current-context": "fake",
    }
    (tmp_path / "kubeconfig").write_text(yaml.safe_dump(kubeconfig))
    from kubernetes.config import kube_config

    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(tmp_path / "kubeconfig"))
    return server


def watch(
    scenario: str, tmp_path, monkeypatch, cleanup: str = "on-success", existing: bool = False
) -> tuple[list, str, Exception | None]:
    server = serve(scenario, tmp_path, monkeypatch)
    FakeTrainerAPI.exists |= existing
    manifest = {"apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "TrainJob"}
    manifest["metadata"] = {"name": "rlhf-ppo-test", "namespace": "kubeflow-rlhf"}
    out, error = io.StringIO(), None
    try:
        TrainJobWatch(manifest, cleanup, timeout=30, poll=0.01, vanish_grace=0.05, out=out).run()
    except TrainJobFailed as err:
        error = err
    finally:
        server.shutdown()
        server.server_close()
    return FakeTrainerAPI.calls, out.getvalue(), error


def test_success_streams_every_pods_log_and_deletes_the_job(tmp_path, monkeypatch):
    calls, log, error = watch("success", tmp_path, monkeypatch)
    assert error is None and "complete" in log
    assert "[rlhf-ppo-test-node-0-0-x0k2p] ppo: step 2 reward=0.19" in log
    assert "[rlhf-ppo-test-node-0-1-x1k2p] rank 1 ready" in log
    assert calls[:2] == [("GET", f"{JOBS}/rlhf-ppo-test"), ("POST", JOBS)]  # none yet: created
    assert calls[-1] == ("DELETE", f"{JOBS}/rlhf-ppo-test")


def test_a_dropped_log_stream_is_reopened_without_losing_or_repeating_lines(tmp_path, monkeypatch):
    calls, log, error = watch("stream_dropped", tmp_path, monkeypatch)
    assert error is None
    pod = "rlhf-ppo-test-node-0-0-x0k2p"
    copied = [line.split("] ", 1)[1] for line in log.splitlines() if line.startswith(f"[{pod}]")]
    assert copied == [f"ppo: step {i} reward={r}" for i, r in zip(range(1, 5), ("0.12", "0.19", "0.24", "0.31"))]
    opened = [c[2] for c in calls if c[:2] == ("LOG", pod)]
    assert opened[0] is None and int(opened[1]) >= 5  # reopened from before the last line copied


def test_a_failed_job_fails_the_task_with_its_reason_and_is_kept(tmp_path, monkeypatch):
    calls, _, error = watch("failure", tmp_path, monkeypatch)
    assert "failed: JobsFailed: jobset rlhf-ppo-test: job node-0 failed: BackoffLimitExceeded" in str(error)
    assert not [c for c in calls if c[0] == "DELETE"]  # on-success: kept for kubectl logs


def test_a_failed_pod_fails_the_task_before_the_job_does(tmp_path, monkeypatch):
    calls, _, error = watch("pod_failed", tmp_path, monkeypatch, cleanup="always")
    assert "pod rlhf-ppo-test-node-0-1-x1k2p failed: exit 137 (OOMKilled)" in str(error)
    assert calls[-1] == ("DELETE", f"{JOBS}/rlhf-ppo-test")


def test_a_vanished_pod_fails_the_task_instead_of_hanging(tmp_path, monkeypatch):
    _, _, error = watch("vanished", tmp_path, monkeypatch)
    assert "pod rlhf-ppo-test-node-0-1-x1k2p vanished" in str(error)


def test_a_deleted_trainjob_fails_the_task(tmp_path, monkeypatch):
    _, _, error = watch("deleted", tmp_path, monkeypatch)
    assert "was deleted before it finished" in str(error)


def test_a_retry_adopts_the_earlier_attempts_running_job(tmp_path, monkeypatch):
    calls, log, error = watch("success", tmp_path, monkeypatch, existing=True)
    assert error is None and "adopted from an earlier attempt" in log and "complete" in log
    assert "[rlhf-ppo-test-node-0-0-x0k2p] ppo: step 2 reward=0.19" in log
    assert not [c for c in calls if c[0] == "POST"]  # one job for the task, still running
    assert calls[-1] == ("DELETE", f"{JOBS}/rlhf-ppo-test")


def attempt(scenario: str, hostname: str, tmp_path, monkeypatch, nodes_write, compiled_nodes=2) -> tuple[object, str]:
    """One attempt of the PPO task (pod `hostname`) with 2 nodes against the fake API: what
    `run_trainjob` returns or raises, and its log. `nodes_write(args, result_file)` plays the nodes."""
    from kfrlhf.launch import trainjob_run
    from kfrlhf.launch.config import DistributedConfig

    settings = ClusterSettings(cache_mount_path=str(tmp_path / "cache"))
    settings.resources["ppo"].nodes = compiled_nodes
    monkeypatch.setenv("RLHF_TRAINJOB_TEMPLATE", node_template(settings, "ppo").to_env())
    monkeypatch.setenv("RLHF_CHECKPOINT_ROOT", str(tmp_path / "cache" / "checkpoints"))
    monkeypatch.setenv("POD_NAMESPACE", "kubeflow-rlhf")
    monkeypatch.setenv("HOSTNAME", hostname)
    out = io.StringIO()
    fast = functools.partial(TrainJobWatch, poll=0.01, vanish_grace=0.05, out=out)
    monkeypatch.setattr(trainjob_run, "TrainJobWatch", fast)
    (tmp_path / "sft_model").mkdir(exist_ok=True)
    (tmp_path / "sft_model" / "weights").write_text("w")
    kwargs = {"ppo": {}, "sft_model": str(tmp_path / "sft_model"), "output_dir": str(tmp_path / "task" / "output")}

    def create(body):
        *_, args_file, result_file = body["spec"]["trainer"]["command"]
        nodes_write(json.loads(Path(args_file).read_text()), Path(result_file))

    server = serve(scenario, tmp_path, monkeypatch)
    FakeTrainerAPI.on_create = create
    try:
        result = run_trainjob(
            "kfrlhf.ppo.stage:run", "ppo", kwargs, DistributedConfig(nodes=2), ["sft_model"], "output_dir"
        )
    except (SystemExit, TrainJobFailed) as err:
        result = err
    finally:
        server.shutdown()
        server.server_close()
    return result, out.getvalue()


def finish(args: dict, result_file: Path) -> None:
    """The nodes' part of a successful job: the output and rank 0's result."""
    Path(args["output_dir"]).mkdir(parents=True, exist_ok=True)
    (Path(args["output_dir"]) / "adapter").write_text("trained")
    result_file.write_text(json.dumps({"steps": 4}))


def test_a_retry_replaces_the_earlier_attempts_failed_job_under_the_same_name(tmp_path, monkeypatch):
    result, log = attempt("retried", "launcher-b", tmp_path, monkeypatch, finish)
    assert result == {"steps": 4}, log
    assert (tmp_path / "task" / "output" / "adapter").read_text() == "trained"
    name = job_name("ppo", str(tmp_path / "task" / "output"))
    calls = [c[:2] for c in FakeTrainerAPI.calls if c[0] in ("POST", "DELETE")]
    assert calls == [("DELETE", f"{JOBS}/{name}"), ("POST", JOBS), ("DELETE", f"{JOBS}/{name}")], log
    assert "the earlier attempt's failed job deleted" in log
    (job,) = FakeTrainerAPI.bodies
    assert job["metadata"]["name"] == name
    pod = node_pod(job)["spec"]  # the launcher pod's scheduling reached the nodes
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true", "node-pool": "rlhf-gpu"}
    assert [t["key"] for t in pod["tolerations"]] == ["nvidia.com/gpu", "dedicated"]
    assert pod["imagePullSecrets"] == [{"name": "rlhf-registry"}]
    assert pod["serviceAccountName"] == "rlhf-pipeline-runner"


def test_a_preempted_pod_fails_the_task_as_preempted(tmp_path, monkeypatch):
    _, _, error = watch("preempted", tmp_path, monkeypatch)
    assert isinstance(error, TrainJobPreempted) and "exit 143" in str(error)
    _, _, error = watch("pod_failed", tmp_path, monkeypatch)  # OOMKilled: the run's own fault
    assert type(error) is TrainJobFailed
    _, _, error = watch("vanished", tmp_path, monkeypatch)  # its node is gone
    assert isinstance(error, TrainJobPreempted)


@pytest.mark.skipif(not TOOL.exists(), reason=f"kfp-argo-compile not found at {TOOL}")
def test_a_preempted_multi_node_task_exits_143_is_retried_and_resumes(tmp_path, monkeypatch):
    def preempted_nodes(args, result_file):  # the nodes save a checkpoint, then one is preempted
        step = checkpoint_root(Path(args["output_dir"])) / "step-2"
        step.mkdir(parents=True)

    exit, log = attempt("preempted", "launcher-a", tmp_path, monkeypatch, preempted_nodes)
    assert isinstance(exit, SystemExit) and exit.code == 143, log

    ir = ROOT / "pipelines" / "compiled" / "rlhf.yaml"
    strategy = stage_pods(_compile(ir))["exec-ppo"]["retry"]
    configmap = yaml.safe_load(
        (ROOT / "manifests/components/argo-retry/workflow-controller-configmap.yaml").read_text()
    )
    defaults = yaml.safe_load(configmap["data"]["workflowDefaults"])["spec"]["templateDefaults"]["retryStrategy"]
    assert argo_decides(_merge_defaults(strategy, defaults), [_killed(5, exit.code)]) == "retry"

    found = []

    def resuming_nodes(args, result_file):
        found.extend(p.name for p in checkpoint_root(Path(args["output_dir"])).iterdir())
        finish(args, result_file)

    result, log = attempt("retried", "launcher-b", tmp_path, monkeypatch, resuming_nodes)
    assert result == {"steps": 4} and found == ["step-2"], log


def test_nodes_set_at_run_time_on_a_one_node_task_is_refused_before_anything_starts(tmp_path, monkeypatch):
    """Its pod holds a GPU: launching a TrainJob from it would leave that GPU idle for the whole job."""
    with pytest.raises(ConfigError, match="rlhf compile --nodes ppo=2"):
        attempt("success", "launcher-a", tmp_path, monkeypatch, finish, compiled_nodes=1)
    assert FakeTrainerAPI.calls == []


def test_the_job_name_is_the_tasks_whatever_the_pod(monkeypatch):
    monkeypatch.setenv("HOSTNAME", "launcher-a")
    first = job_name("ppo", "/minio/mlpipeline/v2/artifacts/rlhf/run-1/ppo/output_dir")
    monkeypatch.setenv("HOSTNAME", "launcher-b")
    assert job_name("ppo", "/minio/mlpipeline/v2/artifacts/rlhf/run-1/ppo/output_dir") == first
    assert job_name("ppo", "/minio/mlpipeline/v2/artifacts/rlhf/run-2/ppo/output_dir") != first


def test_the_role_lets_the_task_run_trainjobs():
    role = next(d for d in yaml.safe_load_all((ROOT / "manifests/base/rbac.yaml").read_text()) if d["kind"] == "Role")
    rules = {(tuple(r["apiGroups"]), tuple(r["resources"])): set(r["verbs"]) for r in role["rules"]}
    assert {"create", "get", "delete"} <= rules[(("trainer.kubeflow.org",), ("trainjobs",))]
    assert {"get", "list"} <= rules[(("",), ("pods",))] and {"get"} <= rules[(("",), ("pods/log",))]


# --- what the cluster gives the launcher pod reaches the TrainJob's pods ---------------------------------


def driver_pod_spec(k8s: dict, service_account: str) -> dict:
    """The scheduling part of the pod spec KFP's driver builds from an executor's Kubernetes config."""
    spec = {"serviceAccountName": service_account}
    if "nodeSelector" in k8s:
        spec["nodeSelector"] = k8s["nodeSelector"]["labels"]
    if "tolerations" in k8s:
        spec["tolerations"] = list(k8s["tolerations"])
    if "imagePullSecret" in k8s:
        spec["imagePullSecrets"] = [{"name": s["secretName"]} for s in k8s["imagePullSecret"]]
    # The API server's own: every pod tolerates a not-ready node for 300 s.
    spec.setdefault("tolerations", []).append(
        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
    )
    return spec


def node_pod(job: dict) -> dict:
    (patch,) = job["spec"]["runtimePatches"]
    return patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]


@pytest.mark.skipif(not TOOL.exists(), reason=f"kfp-argo-compile not found at {TOOL}")
def test_the_gpu_cluster_overlay_reaches_the_trainjob_pods(schema, tmp_path):
    """The gpu-cluster overlay's node pool and taint toleration, and the run's service account, on the
    PPO launcher pod the backend compiles; the TrainJob that pod creates gives them to every node."""
    k8s = stage_pods(_compile(_overlay_versions("gpu-cluster", tmp_path)["rlhf"]))["exec-ppo"]["k8s"]
    launcher = driver_pod_spec(k8s, "rlhf-pipeline-runner")
    template = with_launcher_pod(node_template(ClusterSettings(), "ppo"), launcher)
    job = trainjob_manifest("rlhf-ppo-x", "kubeflow-rlhf", template, 2, 8, ["python"])
    jsonschema.validate(job, schema)
    pod = node_pod(job)["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true", "node-pool": "rlhf-gpu"}
    assert pod["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "dedicated", "operator": "Equal", "value": "rlhf-gpu", "effect": "NoSchedule"},
    ]
    assert pod["serviceAccountName"] == "rlhf-pipeline-runner"


@pytest.mark.skipif(not TOOL.exists(), reason=f"kfp-argo-compile not found at {TOOL}")
def test_compile_chooses_the_gpu_node_label_and_pull_secrets_for_every_pod_and_node(tmp_path):
    label = "cloud.google.com/gke-accelerator=nvidia-h100-80gb"
    argv = ["compile", "--output", str(tmp_path), "--gpu-node-selector", label, "--image-pull-secret", "regcred"]
    assert main(argv + ["--nodes", "ppo=2"]) == 0
    pods = stage_pods(_compile(tmp_path / "rlhf.yaml"))
    for name, pod in pods.items():
        assert [s["secretName"] for s in pod["k8s"]["imagePullSecret"]] == ["regcred"], name
        if "accelerator" in pod["container"]["resources"]:
            assert pod["k8s"]["nodeSelector"]["labels"] == {"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"}
    env = {e["name"]: e["value"] for e in pods["exec-ppo"]["container"]["env"]}
    template = NodeTemplate(**json.loads(env["RLHF_TRAINJOB_TEMPLATE"]))
    pod = node_pod(trainjob_manifest("rlhf-ppo-x", "kubeflow-rlhf", template, 2, 1, ["python"]))["spec"]
    assert pod["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"}
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]


def test_the_run_identity_carries_the_pull_secret_to_the_hook():
    (account,) = yaml.safe_load_all((ROOT / "manifests/base/serviceaccount.yaml").read_text())
    (job,) = yaml.safe_load_all((ROOT / "manifests/base/cache-init.yaml").read_text())
    assert account["imagePullSecrets"] == [{"name": "rlhf-registry"}]
    assert job["spec"]["template"]["spec"]["serviceAccountName"] == account["metadata"]["name"]


def _allowed(policies: list[dict], direction: str, pod: dict, peer: dict, port: int) -> bool:
    """Whether the namespace's NetworkPolicies let `pod` (labels) take `direction` traffic from or to `peer`
    (labels, same namespace) on TCP `port`: the union of the rules of every policy that selects `pod`."""
    key, side = {"ingress": ("Ingress", "from"), "egress": ("Egress", "to")}[direction]
    selecting = [p["spec"] for p in policies if p["spec"]["podSelector"]["matchLabels"].items() <= pod.items()]
    selecting = [s for s in selecting if key in s["policyTypes"]]
    if not selecting:
        return True
    for spec in selecting:
        for rule in spec.get(direction, []):
            peers = rule.get(side)
            matched = peers is None or any(
                "podSelector" in p and p["podSelector"]["matchLabels"].items() <= peer.items() for p in peers
            )
            ports = rule.get("ports")
            if matched and (ports is None or any(p["port"] == port for p in ports)):
                return True
    return False


def test_the_network_policies_let_trainjob_nodes_reach_each_other_and_only_them(capsys):
    policies = list(yaml.safe_load_all((ROOT / "manifests/base/networkpolicy.yaml").read_text()))
    assert main(["render-trainjob", "--stage", "ppo", "--nodes", "2", "--gpus-per-node", "8"]) == 0
    node = node_pod(yaml.safe_load(capsys.readouterr().out))["metadata"]["labels"]
    stage = dict(ClusterSettings().pod_labels)  # a KFP stage pod
    assert node.items() >= stage.items()  # the stage pods' policy covers the nodes
    for port in (29500, 41234):  # the master port, a port NCCL picked
        assert _allowed(policies, "ingress", node, node, port) and _allowed(policies, "egress", node, node, port)
    assert not _allowed(policies, "ingress", node, stage, 29500)  # no other pod reaches a node
    assert not _allowed(policies, "egress", node, {"app": "elsewhere"}, 29500)
    assert _allowed(policies, "egress", node, {"app": "huggingface"}, 443)
    assert not _allowed(policies, "ingress", stage, node, 29500)  # nor does a node reach a stage pod
