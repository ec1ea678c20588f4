"""`rlhf cluster check` against a loopback fake of the Kubernetes API: the parts a multi-node stage needs,
each found (200), missing (404, with how to install it) or unreadable (403)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from kfrlhf.pipelines.cli import main
from kfrlhf.pipelines.cluster.check import CRDS, RETRY_MARK
from tests.fake_http import kubeconfig_for, reply_json

CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/"
RUNTIME_PATH = "/apis/trainer.kubeflow.org/v1alpha1/clustertrainingruntimes/torch-distributed"
CONFIGMAP_PATH = "/api/v1/namespaces/kubeflow/configmaps/workflow-controller-configmap"
RETRY_DEFAULTS = (
    f'spec:\n  templateDefaults:\n    retryStrategy:\n      expression: lastRetry.message contains "{RETRY_MARK}"\n'
)


class FakeCluster(BaseHTTPRequestHandler):
    """Answers GETs from `objects` (path -> body); `forbidden` paths answer 403, any other 404."""

    objects: dict = {}
    forbidden: set = set()

    def do_GET(self):  # noqa: N802
        if self.path in self.forbidden:
            return reply_json(self, 403, {"kind": "Status", "code": 403, "reason": "Forbidden"})
        if self.path in self.objects:
            return reply_json(self, 200, self.objects[self.path])
        reply_json(self, 404, {"kind": "Status", "code": 404, "reason": "NotFound"})

    def log_message(self, *args):
        pass


def complete() -> dict:
    objects = {CRD_PATH + name: {"kind": "CustomResourceDefinition", "metadata": {"name": name}} for name in CRDS}
    objects[RUNTIME_PATH] = {"kind": "ClusterTrainingRuntime", "metadata": {"name": "torch-distributed"}}
    objects[CONFIGMAP_PATH] = {"kind": "ConfigMap", "data": {"workflowDefaults": RETRY_DEFAULTS}}
    return objects


def cluster_check(objects: dict, tmp_path, monkeypatch, capsys, forbidden=()) -> tuple[int, str]:
    FakeCluster.objects, FakeCluster.forbidden = objects, set(forbidden)
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeCluster)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    kubeconfig_for(server, tmp_path, monkeypatch)
    try:
        code = main(["cluster", "check"])
    finally:
        server.shutdown()
        server.server_close()
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_a_cluster_with_every_part_passes(tmp_path, monkeypatch, capsys):
    code, out = cluster_check(complete(), tmp_path, monkeypatch, capsys)
    assert code == 0 and "the cluster has what multi-node stages need" in out, out
    assert out.count("ok ") == len(CRDS) + 2, out


@pytest.mark.parametrize(
    "drop, named, install",
    [
        (RUNTIME_PATH, "ClusterTrainingRuntime torch-distributed", "manifests/overlays/runtimes?ref=v2.3.0"),
        (CRD_PATH + "jobsets.jobset.x-k8s.io", "JobSet: CRD jobsets.jobset.x-k8s.io", "JobSet v0.12.0"),
        (CRD_PATH + "trainjobs.trainer.kubeflow.org", "Kubeflow Trainer (TrainJob CRD)", "overlays/manager"),
    ],
)
def test_a_missing_part_is_named_with_how_to_install_it(drop, named, install, tmp_path, monkeypatch, capsys):
    objects = complete()
    del objects[drop]
    code, out = cluster_check(objects, tmp_path, monkeypatch, capsys)
    line = next(line for line in out.splitlines() if named in line)
    assert code == 1 and line.startswith("missing"), out
    assert install in out.splitlines()[out.splitlines().index(line) + 1]


def test_kfp_without_the_retry_component_and_an_unreadable_configmap(tmp_path, monkeypatch, capsys):
    objects = complete()
    objects[CONFIGMAP_PATH] = {"kind": "ConfigMap", "data": {"workflowDefaults": "spec: {}\n"}}  # KFP's own
    code, out = cluster_check(objects, tmp_path, monkeypatch, capsys)
    assert code == 1 and "missing  the argo-retry policy" in out and "manifests/components/argo-retry" in out
    code, out = cluster_check(complete(), tmp_path, monkeypatch, capsys, forbidden={CONFIGMAP_PATH})
    assert code == 1 and "unknown  the argo-retry policy" in out and "HTTP 403" in out
