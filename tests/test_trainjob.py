"""Multi-node stages: the TrainJob `rlhf render-trainjob` prints validates against the Kubeflow Trainer
CRD; the pipeline compiled with a multi-node stage passes the KFP backend's compiler; the watcher
follows recorded API responses (tests/trainjob_api/) to success, to the job's failure, to a failed
pod, to a vanished pod and to a deleted TrainJob, through the `kubernetes` client against a
loopback fake of the API server."""

from __future__ import annotations

import functools
import importlib
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
from tests.conftest import CRDS, needs
from tests.fake_http import kubeconfig_for, reply_json
from tests.test_manifests import _strict
from tests.test_workflow import TOOL, _compile, _killed, _merge_defaults, _overlay_versions, argo_decides, stage_pods

ROOT = Path(__file__).resolve().parents[1]
CRD = CRDS / "kubeflow-trainer" / "trainer.kubeflow.org_trainjobs.yaml"
RECORDED = Path(__file__).parent / "trainjob_api"
NEEDS_COMPILER = needs(TOOL, "kfp-argo-compile (KFP 2.17.0's backend compiler, built from upstream)")
JOBS = "/apis/trainer.kubeflow.org/v1alpha1/namespaces/kubeflow-rlhf/trainjobs"
# The run's Argo Workflow, which owns every pod it runs (argo-workflows v4.0.5
# workflow/controller/workflowpod.go:211-212).
WORKFLOW_OWNER = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "name": "rlhf-x7k2p", "uid": "0c1d"}
# The task's own pod (any name launcher-*) as a cluster with the gpu-cluster overlay runs it.
LAUNCHER = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {
        "name": "launcher-a",
        "namespace": "kubeflow-rlhf",
        "ownerReferences": [WORKFLOW_OWNER | {"controller": True, "blockOwnerDeletion": True}],
    },
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


@NEEDS_COMPILER
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
    """A TrainJob's nodes start the function that the stage's KFP component runs."""
    from kfrlhf.pipelines.cluster.platform import DISTRIBUTED_STAGES

    assert {"sft", "reward", "ppo", "dpo", "grpo", "kto"} <= set(DISTRIBUTED_STAGES) == set(cli_cluster.ENTRY_POINTS)
    for stage in DISTRIBUTED_STAGES:
        function = importlib.import_module(f"kfrlhf.{stage}.stage").run
        assert cli_cluster.ENTRY_POINTS[stage] == entry_point(function), stage
        assert f"run_stage({function.__name__}" in (ROOT / "components" / stage / "component.py").read_text(), stage


@NEEDS_COMPILER
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
            self.calls.append(("LOG", pod, query.get("sinceSeconds", [None])[0], query.get("previous", [None])[0]))
            lines = self.scenario["logs"][pod].splitlines()[-int(query.get("tailLines", [0])[0]) :]
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


def recorded(scenario: str) -> dict:
    return json.loads((RECORDED / f"{scenario}.json").read_text())


def serve(scenario: str | dict, tmp_path, monkeypatch) -> ThreadingHTTPServer:
    """The fake API server replaying `scenario` (a recorded one's name, or its content), as the kubeconfig's cluster."""
    FakeTrainerAPI.scenario = recorded(scenario) if isinstance(scenario, str) else scenario
    FakeTrainerAPI.calls, FakeTrainerAPI.bodies, FakeTrainerAPI.round, FakeTrainerAPI.log_requests = [], [], 0, {}
    FakeTrainerAPI.exists, FakeTrainerAPI.on_create = FakeTrainerAPI.scenario.get("exists", False), None
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeTrainerAPI)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    kubeconfig_for(server, tmp_path, monkeypatch)
    return server


def watch(
    scenario: str | dict, tmp_path, monkeypatch, cleanup: str = "on-success", existing: bool = False
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
    assert "failed: FailedJobs: jobset failed due to one or more job failures" in str(error)
    assert not [c for c in calls if c[0] == "DELETE"]  # on-success: a failed job holds no GPUs, kept for kubectl logs


CRASHED = "rlhf-ppo-test-node-0-1-x1k2p"


def crash_variant(status: dict) -> dict:
    """crash_looped.json with node 1's container status replaced by `status` (its other fields kept)."""
    scenario = recorded("crash_looped")
    pod = scenario["rounds"][1]["pods"]["items"][1]
    (container,) = pod["status"]["containerStatuses"]
    for key in ("state", "lastState", "restartCount"):
        container.pop(key, None)
    container.update(status)
    return scenario


OOM = {"terminated": {"exitCode": 137, "reason": "OOMKilled", "startedAt": "2026-11-30T21:01:02Z"}}
PYTHON_ERROR = {"terminated": {"exitCode": 1, "reason": "Error", "startedAt": "2026-11-30T21:01:02Z"}}


@pytest.mark.parametrize(
    "status, why",
    [
        (None, "container node exit 137 (OOMKilled), restarted 1 time(s)"),  # as recorded: crash-looping
        ({"restartCount": 1, "state": {"running": {}}, "lastState": PYTHON_ERROR}, "exit 1 (Error), restarted 1"),
        ({"restartCount": 0, "state": {"waiting": {"reason": "Error"}}, "lastState": {}}, "container node Error"),
        ({"restartCount": 0, "state": {"running": {}}, "lastState": OOM}, "exit 137 (OOMKilled), restarted 0"),
    ],
)
def test_a_crashed_rank_fails_the_task_at_the_first_poll_with_its_log_and_the_job_is_deleted(
    status, why, tmp_path, monkeypatch
):
    """JobSet restarts a crashed rank in place (restartPolicy OnFailure): its pod stays Running."""
    scenario = "crash_looped" if status is None else crash_variant(status)
    calls, _, error = watch(scenario, tmp_path, monkeypatch)
    assert type(error) is TrainJobFailed and f"pod {CRASHED} crashed: " in str(error) and why in str(error)
    assert "| rank 1 ready\n  | ppo: step 1 loading the reward model" in str(error)  # the rank's last lines
    assert FakeTrainerAPI.round == 2  # failed at the poll that first showed the crash (the second round)
    restarted = (status or {"restartCount": 1})["restartCount"] > 0
    logs = [c for c in calls if c[:2] == ("LOG", CRASHED) and c[2] is None and c[3] is not None]
    assert logs[-1][3].lower() == ("true" if restarted else "false")  # the previous run's log when it restarted
    assert calls[-1] == ("DELETE", f"{JOBS}/rlhf-ppo-test")  # the job was running: no GPUs held after the task


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
    # Owned by the run's Workflow: deleted with it when no retry came to adopt it.
    assert job["metadata"]["ownerReferences"] == [WORKFLOW_OWNER]
    pod = node_pod(job)["spec"]  # the launcher pod's scheduling reached the nodes
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true", "node-pool": "rlhf-gpu"}
    assert [t["key"] for t in pod["tolerations"]] == ["nvidia.com/gpu", "dedicated"]
    assert pod["imagePullSecrets"] == [{"name": "rlhf-registry"}]
    assert pod["serviceAccountName"] == "rlhf-pipeline-runner"


def test_a_preempted_pod_fails_the_task_as_preempted(tmp_path, monkeypatch):
    _, _, error = watch("preempted", tmp_path, monkeypatch)
    assert isinstance(error, TrainJobPreempted) and "exit 143" in str(error)
    _, _, error = watch("crash_looped", tmp_path, monkeypatch)  # OOMKilled: the run's own fault
    assert type(error) is TrainJobFailed
    _, _, error = watch("vanished", tmp_path, monkeypatch)  # its node is gone
    assert isinstance(error, TrainJobPreempted)


def launcher_exit(task_exit: int, termination_message: str) -> dict:
    """The attempt as Argo records it once KFP's launcher has run the task: any failure of the user code
    is glog.Exit, exit 1 (kubeflow/pipelines 2.17.0 backend/src/v2/cmd/launcher-v2/main.go:56-60;
    golang/glog v1.2.5 Exit: os.Exit(1)), and the node message is "main: <reason> (exit code N)" plus
    ": <termination message>" when there is one (argo-workflows v4.0.5 workflow/controller/operator.go:
    1766-1770, inferFailedReason); lastRetry.* are that node's exit code, phase and message
    (operator.go:2050-2069, buildRetryStrategyLocalScope)."""
    code = 0 if task_exit == 0 else 1
    message = f"main: Error (exit code {code})" + (f": {termination_message}" if termination_message else "")
    return {"start": 0.0, "end": 5 * 3600.0, "phase": "Failed", "exit": str(code), "message": message}


@pytest.fixture
def retry_strategy() -> dict:
    """The PPO task's retryStrategy in the compiled pipeline, merged with the argo-retry component's defaults."""
    ir = ROOT / "pipelines" / "compiled" / "rlhf.yaml"
    strategy = stage_pods(_compile(ir))["exec-ppo"]["retry"]
    configmap = yaml.safe_load(
        (ROOT / "manifests/components/argo-retry/workflow-controller-configmap.yaml").read_text()
    )
    defaults = yaml.safe_load(configmap["data"]["workflowDefaults"])["spec"]["templateDefaults"]["retryStrategy"]
    return _merge_defaults(strategy, defaults)


@NEEDS_COMPILER
def test_a_preempted_node_leaves_the_retry_message_is_retried_and_resumes(tmp_path, monkeypatch, retry_strategy):
    """From the pod's DisruptionTarget condition to a retry that resumes: the task leaves the retry message and
    exits 143, KFP's launcher makes that exit 1, and the retry expression matches the message."""
    from kfrlhf.launch import trainjob_run

    termination_log = tmp_path / "termination-log"
    monkeypatch.setattr(trainjob_run, "TERMINATION_LOG", termination_log)

    def preempted_nodes(args, result_file):  # the nodes save a checkpoint, then one is preempted
        step = checkpoint_root(Path(args["output_dir"])) / "step-2"
        step.mkdir(parents=True)

    exit, log = attempt("preempted", "launcher-a", tmp_path, monkeypatch, preempted_nodes)
    assert isinstance(exit, SystemExit) and exit.code == 143, log
    message = termination_log.read_text()
    assert message.startswith(trainjob_run.RETRY_MESSAGE) and "PreemptionByScheduler" not in message
    assert ("DELETE", f"{JOBS}/{job_name('ppo', str(tmp_path / 'task' / 'output'))}") in FakeTrainerAPI.calls
    assert argo_decides(retry_strategy, [launcher_exit(exit.code, message)]) == "retry"
    # Without the message Argo sees a plain exit 1, which is never retried: why the task leaves it.
    assert argo_decides(retry_strategy, [launcher_exit(exit.code, "")]) == "retryStrategy.expression evaluated to false"

    found = []

    def resuming_nodes(args, result_file):
        found.extend(p.name for p in checkpoint_root(Path(args["output_dir"])).iterdir())
        finish(args, result_file)

    result, log = attempt("retried", "launcher-b", tmp_path, monkeypatch, resuming_nodes)
    assert result == {"steps": 4} and found == ["step-2"], log


@NEEDS_COMPILER
def test_a_crashed_rank_fails_the_task_at_once_without_a_retry(tmp_path, monkeypatch, retry_strategy):
    from kfrlhf.launch import trainjob_run

    termination_log = tmp_path / "termination-log"
    monkeypatch.setattr(trainjob_run, "TERMINATION_LOG", termination_log)
    error, log = attempt("crash_looped", "launcher-a", tmp_path, monkeypatch, lambda args, result: None)
    assert type(error) is TrainJobFailed and "OOMKilled" in str(error), log
    assert not termination_log.exists()
    assert argo_decides(retry_strategy, [launcher_exit(1, "")]) == "retryStrategy.expression evaluated to false"


def test_a_launcher_pod_preempted_or_drained_is_retried_and_adopts_the_job(tmp_path, monkeypatch):
    """The launcher pod itself preempted (deleted: Argo marks the node Error) or drained (SIGTERM: the
    emissary reports a child ended by a signal as 137, argo-workflows v4.0.5 cmd/argoexec/commands/
    emissary.go:245-251) is retried by the component's rule; the retry adopts the job still running."""
    from tests.test_workflow import RETRY_COMPONENT

    configmap = yaml.safe_load((RETRY_COMPONENT / "workflow-controller-configmap.yaml").read_text())
    defaults = yaml.safe_load(configmap["data"]["workflowDefaults"])["spec"]["templateDefaults"]["retryStrategy"]
    deleted = {**_killed(5, -1), "phase": "Error", "message": "pod deleted"}
    assert argo_decides(defaults, [deleted]) == "retry"
    assert argo_decides(defaults, [_killed(5, 137)]) == "retry"
    assert argo_decides(defaults, [_killed(5, 137, "OOMKilled")]) != "retry"
    calls, log, error = watch("success", tmp_path, monkeypatch, existing=True)
    assert error is None and "adopted from an earlier attempt" in log
    assert not [c for c in calls if c[0] == "POST"]


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


@NEEDS_COMPILER
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


@NEEDS_COMPILER
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
