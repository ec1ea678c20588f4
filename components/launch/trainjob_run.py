"""A multi-node stage as a TrainJob: stage the inputs on shared storage, create the job, stream its
logs, wait, fail with the job's reason, clean up, bring the outputs back.

The KFP task pod only launches. Its nodes get what the cluster gave the task's own pod (an overlay's
node pool and tolerations, pull secrets, the run's service account: `trainjob.with_launcher_pod`).
Its input artifacts are copied to `<pvc>/trainjobs/<key>/inputs`, the stage writes
`<pvc>/trainjobs/<key>/output` (its checkpoints stay under RLHF_CHECKPOINT_ROOT on the same PVC, so a
retried task resumes), and the output is copied back into the task's artifact.
`<key>` comes from the output artifact's path: a retry of the task reuses the same directory.

`TrainJobWatch.run` fails the task, instead of hanging, when the TrainJob reports Failed (with its
reason and message), when any of its pods fails, when a node's container restarts or crash-loops
(JobSet gives its pods `restartPolicy: OnFailure`, so a crashed or OOM-killed rank restarts in place
and its pod stays Running: the task fails at the first poll that sees it, with the rank's last log
lines), when a pod that was running vanishes and no replacement appears within `vanish_grace`
seconds, when the TrainJob itself is deleted, or at the timeout. Each pod's log is copied into the
task's log, and reopened where it broke off when the API server drops the stream.

A task that fails deletes its TrainJob unless the job itself ended Failed (it then holds no GPUs and
stays for `kubectl logs` under `cleanup: on-success`): no job outlives its task, except one whose
launcher pod died (preempted, evicted, drained), which the retry adopts (`TrainJobWatch.adopt`); the run's
Workflow owns the job, so it goes with the Workflow when no retry comes (`workflow_owners`).

A node that was preempted, evicted or lost is retried: KFP's launcher turns any exit of this code into
exit 1 (kubeflow/pipelines 2.17.0 backend/src/v2/cmd/launcher-v2/main.go: glog.Exit), so the task
writes RETRY_MESSAGE to its container's termination message, which Argo puts in the node message that
the retry expression reads (manifests/components/argo-retry; docs/cluster.md, "Recovery").
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from kfrlhf.common.checkpoint import PREEMPTED_EXIT
from kfrlhf.common.config import ConfigError

from .config import DistributedConfig
from .trainjob import API_GROUP, API_VERSION, PLURAL, NodeTemplate, trainjob_manifest, with_launcher_pod

JOBSET_LABEL = "jobset.sigs.k8s.io/jobset-name"  # the JobSet, named after the TrainJob, labels its pods
NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class TrainJobFailed(RuntimeError):
    """The TrainJob failed, lost a pod, vanished or ran out of time."""


class TrainJobPreempted(TrainJobFailed):
    """A node was preempted, evicted or lost: the task leaves RETRY_MESSAGE and exits 143, which the retry
    policy retries (manifests/components/argo-retry), and the retry's new job resumes from the checkpoints."""


# The retry expression matches this in Argo's node message, "main: Error (exit code 1): <termination
# message>" (argo-workflows v4.0.5 workflow/controller/operator.go:1766-1770, inferFailedReason).
RETRY_MESSAGE = "kfrlhf-retry: a TrainJob node was preempted"
# The kubelet reads the main container's termination message from here (its default path, made 0666 for a
# non-root user: kubernetes pkg/kubelet/kuberuntime/kuberuntime_container.go, makeMounts); KFP and Argo
# leave it as it is.
TERMINATION_LOG = Path(os.environ.get("RLHF_TERMINATION_LOG", "/dev/termination-log"))
# A node's container restarted in place or is about to (kubelet waiting reasons), or was OOM-killed.
CRASH_WAITING = {"CrashLoopBackOff", "Error"}
LOG_TAIL = 20  # a crashed rank's last log lines in the task's error


# Why the kubelet or scheduler ends a pod that did nothing wrong (pod status reason, DisruptionTarget).
DISRUPTED = {"Evicted", "Preempting", "Terminated", "NodeShutdown", "NodeLost", "DeletionByTaintManager"}


def disrupted(pod) -> bool:
    """The pod was preempted, evicted or lost with its node, or its main container ended by SIGTERM (143)
    or by SIGKILL (137) other than an OOM kill: what the retry policy retries."""
    status = pod.status
    if status.reason in DISRUPTED or any(
        c.type == "DisruptionTarget" and c.status == "True" for c in status.conditions or []
    ):
        return True
    ended = [s.state.terminated for s in status.container_statuses or [] if s.state and s.state.terminated]
    return any(t.exit_code == 143 or (t.exit_code == 137 and t.reason != "OOMKilled") for t in ended)


def crashed(pod) -> str | None:
    """Why a node's container restarted in place, crash-loops or was OOM-killed; None when it did not."""
    for status in pod.status.container_statuses or []:
        last = status.last_state.terminated if status.last_state else None
        waiting = status.state.waiting if status.state else None
        looping = waiting is not None and waiting.reason in CRASH_WAITING
        if status.restart_count or looping or (last and last.reason == "OOMKilled"):
            why = f"exit {last.exit_code} ({last.reason})" if last else waiting.reason
            return f"container {status.name} {why}, restarted {status.restart_count or 0} time(s)"
    return None


def current_namespace() -> str:
    return NAMESPACE_FILE.read_text().strip() if NAMESPACE_FILE.exists() else os.environ.get("POD_NAMESPACE", "default")


def job_name(section: str, output_dir: str) -> str:
    """`rlhf-<stage>-<hash>`: one per output artifact, the same for every retry of the task."""
    return f"rlhf-{section}-{hashlib.sha256(output_dir.encode()).hexdigest()[:10]}"


def node_command(section: str, target: str, args_file: Path, result_file: Path) -> list[str]:
    return ["python", "-m", "kfrlhf.launch.launcher", "node", section, target, str(args_file), str(result_file)]


def workdir_of(template: NodeTemplate, output_dir: str) -> Path:
    """The job's directory on the shared PVC, named after the output artifact (the same for a retry)."""
    return Path(template.mount_path) / "trainjobs" / hashlib.sha256(output_dir.encode()).hexdigest()[:16]


def build_trainjob(
    target: str, section: str, dist: DistributedConfig, template: NodeTemplate, workdir: Path, name: str, namespace: str
) -> dict:
    """The TrainJob whose nodes run `target` on the arguments in `workdir`/args.json."""
    command = node_command(section, target, workdir / "args.json", workdir / "result.json")
    processes = dist.processes(template.gpus)
    labels = {"kubeflow-rlhf/stage": section}
    return trainjob_manifest(name, namespace, template, dist.nodes, processes, command, dist.runtime, labels)


def run_trainjob(target: str, section: str, kwargs: dict, dist: DistributedConfig, inputs, output: str) -> dict:
    """Run `target(**kwargs)` as a TrainJob of `dist.nodes` nodes; rank 0's result."""
    template = NodeTemplate.from_env()
    if template.gpus and not template.launcher:
        raise ConfigError(
            f"{section}.distributed.nodes={dist.nodes}: this task was compiled for one node and holds "
            f"{template.gpus} GPU(s) that would idle for the whole TrainJob; compile it as a launcher "
            f"(`rlhf compile --nodes {section}={dist.nodes}`), or run with {section}.distributed.nodes=1"
        )
    namespace = current_namespace()
    _, core = clients()
    launcher = core.api_client.sanitize_for_serialization(core.read_namespaced_pod(os.environ["HOSTNAME"], namespace))
    template = with_launcher_pod(template, launcher["spec"])  # this task's own pod's scheduling
    workdir = workdir_of(template, kwargs[output])
    result_file = workdir / "result.json"

    def stage_inputs() -> None:
        staged = dict(kwargs)
        for name in inputs:
            staged[name] = str(copy(Path(kwargs[name]), workdir / "inputs" / name))
        staged[output] = str(workdir / "output")
        (workdir / "args.json").write_text(json.dumps(staged))
        result_file.unlink(missing_ok=True)

    name = job_name(section, kwargs[output])
    manifest = build_trainjob(target, section, dist, template, workdir, name, namespace)
    manifest["metadata"]["ownerReferences"] = workflow_owners(launcher)
    try:
        TrainJobWatch(manifest, dist.cleanup, timeout=template.timeout_seconds or None).run(stage_inputs)
    except TrainJobPreempted as err:
        leave_retry_message(str(err))
        print(f"{err}: exit {PREEMPTED_EXIT}, a retry resumes from the checkpoints", file=sys.stderr, flush=True)
        raise SystemExit(PREEMPTED_EXIT) from err
    copy(workdir / "output", Path(kwargs[output]))
    result = json.loads(result_file.read_text())
    shutil.rmtree(workdir, ignore_errors=True)
    return result


def workflow_owners(pod: dict) -> list[dict]:
    """The Argo Workflow that owns the launcher pod (argo-workflows v4.0.5 workflow/controller/workflowpod.go
    :211-212 makes it the pod's controller), as the TrainJob's owner: when the run's Workflow is deleted (KFP's
    ttlStrategy) the garbage collector deletes a job no retry came for. Not a controller reference, and
    blockOwnerDeletion unset, which needs no permission on workflows."""
    keys = ("apiVersion", "kind", "name", "uid")
    return [{k: o[k] for k in keys} for o in pod["metadata"].get("ownerReferences") or [] if o["kind"] == "Workflow"]


def leave_retry_message(why: str) -> None:
    """The termination message that tells Argo's retry expression to retry the task."""
    try:
        TERMINATION_LOG.write_text(f"{RETRY_MESSAGE} ({why})"[:4096])  # the kubelet keeps at most 4096 bytes
    except OSError as err:  # not in a pod: nothing reads it
        print(f"could not write {TERMINATION_LOG}: {err}", file=sys.stderr, flush=True)


def copy(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        shutil.copytree(src, dst, dirs_exist_ok=True)
    else:
        shutil.copyfile(src, dst)
    return dst


def clients():
    """(CustomObjectsApi, CoreV1Api) from the pod's service account, else the kubeconfig."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.CustomObjectsApi(), client.CoreV1Api()


def condition(job: dict, kind: str) -> dict | None:
    return next(
        (c for c in job.get("status", {}).get("conditions", []) if c["type"] == kind and c["status"] == "True"), None
    )


class TrainJobWatch:
    """Create one TrainJob and follow it to its end (see the module docstring)."""

    def __init__(self, manifest: dict, cleanup: str, timeout: float | None = None, poll: float = 10.0, **kw):
        self.manifest, self.cleanup, self.timeout, self.poll = manifest, cleanup, timeout, poll
        self.vanish_grace = kw.get("vanish_grace", 120.0)
        self.gone_timeout = kw.get("gone_timeout", 600.0)  # for a failed job's pods to end
        self.out = kw.get("out", sys.stdout)
        self.name, self.namespace = manifest["metadata"]["name"], manifest["metadata"]["namespace"]
        self.where = dict(group=API_GROUP, version=API_VERSION, namespace=self.namespace, plural=PLURAL)
        self.streams: dict[str, threading.Thread] = {}
        self.finished = threading.Event()  # the job ended: log streams stop reopening

    def run(self, prepare=lambda: None) -> None:
        """Adopt the task's job when a retry finds it alive, else `prepare()` and create it."""
        custom, core = clients()
        if not self.adopt(custom, core):
            prepare()
            custom.create_namespaced_custom_object(body=self.manifest, **self.where)
            print(f"TrainJob {self.namespace}/{self.name} created", file=self.out, flush=True)
        self.job_failed = False  # the job itself ended Failed: it holds no GPUs
        try:
            self.wait(custom, core)
        finally:
            self.finished.set()
            for thread in self.streams.values():
                thread.join(timeout=30)
            if self.cleanup == "always" or (self.cleanup == "on-success" and not self.job_failed):
                self.delete(custom)

    def delete(self, custom) -> None:
        from kubernetes.client import ApiException

        try:
            custom.delete_namespaced_custom_object(name=self.name, **self.where)
        except ApiException as err:
            if err.status != 404:  # already gone
                raise

    def adopt(self, custom, core) -> bool:
        """A job of this name is an earlier attempt's (the name is the task's). One still running or
        complete is adopted: the launcher pod died, not the job, and its nodes keep their progress. A
        failed one, or one with a failed pod, is deleted, and once its pods are gone a new one resumes
        from the checkpoints: two jobs never write one folder."""
        job = self.get(custom)
        if job is None:
            return False
        pods = self.pods(core)
        if not condition(job, "Failed") and not any(p.status.phase == "Failed" for p in pods):
            print(f"TrainJob {self.namespace}/{self.name} adopted from an earlier attempt", file=self.out, flush=True)
            return True
        custom.delete_namespaced_custom_object(name=self.name, **self.where)
        print(f"TrainJob {self.name}: the earlier attempt's failed job deleted", file=self.out, flush=True)
        start = time.monotonic()
        while self.get(custom) or self.pods(core):
            if time.monotonic() - start > self.gone_timeout:
                raise TrainJobFailed(f"TrainJob {self.name}: the earlier attempt's job is still being deleted")
            time.sleep(self.poll)
        return False

    def get(self, custom) -> dict | None:
        """The TrainJob, None when there is none."""
        from kubernetes.client import ApiException

        try:
            return custom.get_namespaced_custom_object(name=self.name, **self.where)
        except ApiException as err:
            if err.status == 404:
                return None
            raise

    def pods(self, core) -> list:
        return core.list_namespaced_pod(self.namespace, label_selector=f"{JOBSET_LABEL}={self.name}").items

    def wait(self, custom, core) -> None:
        start, seen, missing_since = time.monotonic(), set(), None
        while True:
            job = self.get(custom)
            if job is None:
                raise TrainJobFailed(f"TrainJob {self.name} was deleted before it finished")
            if condition(job, "Complete"):
                print(f"TrainJob {self.name} complete", file=self.out, flush=True)
                return
            failed = condition(job, "Failed")
            if failed:
                self.job_failed = True
                error = TrainJobPreempted if any(disrupted(p) for p in self.pods(core)) else TrainJobFailed
                raise error(f"TrainJob {self.name} failed: {failed.get('reason')}: {failed.get('message')}")
            pods = self.pods(core)
            for pod in pods:
                self.check_pod(pod, core)
            names = {p.metadata.name for p in pods}
            if seen - names and not names - seen:
                missing_since = missing_since or time.monotonic()
                if time.monotonic() - missing_since > self.vanish_grace:
                    lost = ", ".join(sorted(seen - names))
                    raise TrainJobPreempted(f"TrainJob {self.name}: pod {lost} vanished and nothing replaced it")
            else:
                missing_since = None
            seen |= names
            if self.timeout and time.monotonic() - start > self.timeout:
                raise TrainJobFailed(f"TrainJob {self.name} did not finish within {self.timeout:.0f} s")
            time.sleep(self.poll)

    def check_pod(self, pod, core) -> None:
        name, phase = pod.metadata.name, pod.status.phase
        if phase == "Failed":
            statuses = pod.status.container_statuses or []
            ended = [s.state.terminated for s in statuses if s.state and s.state.terminated]
            why = "; ".join(f"exit {t.exit_code} ({t.reason})" for t in ended) or pod.status.reason or "unknown"
            error = TrainJobPreempted if disrupted(pod) else TrainJobFailed
            raise error(f"TrainJob {self.name}: pod {name} failed: {why}")
        why = crashed(pod)
        if why:
            raise TrainJobFailed(f"TrainJob {self.name}: pod {name} crashed: {why}{self.last_lines(core, pod)}")
        if phase in ("Running", "Succeeded") and name not in self.streams:
            thread = threading.Thread(target=self.stream, args=(core, name), daemon=True)
            self.streams[name] = thread
            thread.start()

    def last_lines(self, core, pod) -> str:
        """The crashed container's last log lines (its previous run's when it restarted), indented."""
        from kubernetes.client import ApiException

        restarted = any(s.restart_count for s in pod.status.container_statuses or [])
        try:
            text = core.read_namespaced_pod_log(
                pod.metadata.name, self.namespace, previous=restarted, tail_lines=LOG_TAIL
            )
        except ApiException as err:
            return f"\n  (no log: {err.reason})"
        return "".join(f"\n  | {line}" for line in text.splitlines())

    def stream(self, core, pod: str) -> None:
        """Copy one pod's log to the task's log, each line prefixed with the pod's name. A follow stream the
        API server drops while the pod still runs (a restart, an idle timeout) is reopened from a little
        before the last line's timestamp, and the lines already copied are skipped."""
        from kubernetes.client import ApiException

        last = None  # stamp_key of the last line copied
        while True:
            since = None if last is None else seconds_since(last) + STREAM_OVERLAP_S
            resp = core.read_namespaced_pod_log(
                pod, self.namespace, follow=True, timestamps=True, since_seconds=since, _preload_content=False
            )
            for line in stream_lines(resp):
                stamp, _, text = line.partition(" ")
                if not STAMP.fullmatch(stamp):  # not the API's timestamp: copy as it is
                    print(f"[{pod}] {line}", file=self.out, flush=True)
                elif last is None or stamp_key(stamp) > last:
                    print(f"[{pod}] {text}", file=self.out, flush=True)
                    last = stamp_key(stamp)
            try:
                running = core.read_namespaced_pod(pod, self.namespace).status.phase == "Running"
            except ApiException:
                running = False  # gone: the watcher's own checks say why
            if not running or self.finished.is_set():
                return
            time.sleep(self.poll)


STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")
STREAM_OVERLAP_S = 5  # a reopened log stream starts this much before the last line (clock skew between nodes)


def stream_lines(resp):
    """The decoded lines of a streamed HTTP response, the last one even without its newline."""
    pending = b""
    for chunk in resp.stream():
        *lines, pending = (pending + chunk).split(b"\n")
        yield from (line.decode(errors="replace") for line in lines)
    if pending:
        yield pending.decode(errors="replace")


def stamp_key(stamp: str) -> tuple[str, str]:
    """An RFC 3339 timestamp as the kubelet writes it, sortable: its trailing zeros are cut, so ".1Z" comes
    before ".123456789Z" only once the "Z" is off (fraction digits then sort as numbers do)."""
    whole, _, fraction = stamp.rstrip("Z").partition(".")
    return whole, fraction


def seconds_since(key: tuple[str, str]) -> int:
    """Whole seconds from a `stamp_key` (UTC) to now, at least 1 (the API's `sinceSeconds` minimum)."""
    then = datetime.fromisoformat(key[0]).replace(tzinfo=timezone.utc)
    return max(1, math.ceil((datetime.now(timezone.utc) - then).total_seconds()))
