"""Contract test for `rlhf submit`: a loopback HTTP server plays the KFP v2beta1 REST API.

This checks what `kfp.Client` sends: the experiment, the run (by default a reference to the
deployed pipeline version, looked up by the pipeline's name; with --package the compiled spec
inline), the parameters and the bearer token. It is not a cluster and runs no pipeline.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
import yaml

from kfrlhf.pipelines.cluster import cli as cli_cluster
from kfrlhf.pipelines.cluster.compile import compile_pipeline
from kfrlhf.pipelines.cluster.platform import ClusterSettings
from tests.fake_http import reply_json

ROOT = Path(__file__).resolve().parents[1]


def _deployed() -> dict:
    """The PipelineVersions the gpu-cluster overlay deploys (two of rlhf: an older one first)."""
    docs = yaml.safe_load_all((ROOT / "manifests" / "base" / "pipelines" / "rlhf.k8s.yaml").read_text())
    spec = next(d for d in docs if d["kind"] == "PipelineVersion")["spec"]
    wrapped = {"pipeline_spec": spec["pipelineSpec"], "platform_spec": spec["platformSpec"]}  # as the API returns it
    return {
        "pipelines": [{"pipeline_id": "p-rlhf", "display_name": "rlhf"}],
        "pipeline_versions": [
            {
                "pipeline_id": "p-rlhf",
                "pipeline_version_id": f"v-{i}",
                "name": name,
                "display_name": name,
                "created_at": f"2026-11-2{i}T00:00:00Z",
                "pipeline_spec": wrapped,
            }
            for i, name in ((2, "rlhf-0-1-0-newest"), (1, "rlhf-0-1-0-older"))
        ],
    }


class FakeKFP(BaseHTTPRequestHandler):
    """Just enough of /apis/v2beta1 for creating runs (deployed version or package) and waiting."""

    requests: list[dict] = []
    deployed = _deployed()

    def _reply(self, body: dict, status: int = 200) -> None:
        reply_json(self, status, body)

    def _record(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        req = {"method": self.command, "path": self.path, "auth": self.headers.get("Authorization"), "body": body}
        self.requests.append(req)
        return req

    def do_GET(self):  # noqa: N802 (http.server naming)
        path = self._record()["path"]
        if path.startswith("/apis/v2beta1/healthz"):
            self._reply({"multi_user": False})
        elif path.startswith("/apis/v2beta1/experiments"):
            self._reply({"experiments": [], "total_size": 0})
        elif path.startswith("/apis/v2beta1/pipelines/p-rlhf/versions"):
            self._reply({"pipeline_versions": self.deployed["pipeline_versions"], "total_size": 2})
        elif path.startswith("/apis/v2beta1/pipelines"):
            name = json.loads(parse_qs(urlparse(path).query)["filter"][0])["predicates"][0]["stringValue"]
            found = [p for p in self.deployed["pipelines"] if p["display_name"] == name]
            self._reply({"pipelines": found, "total_size": len(found)})
        elif path.startswith("/apis/v2beta1/runs/run-1"):
            self._reply({"run_id": "run-1", "state": "SUCCEEDED"})
        else:
            self._reply({"error": f"unexpected GET {path}"}, 404)

    def do_POST(self):  # noqa: N802
        req = self._record()
        if req["path"] == "/apis/v2beta1/experiments":
            self._reply({"experiment_id": "exp-1", **req["body"]})
        elif req["path"] == "/apis/v2beta1/runs":
            self._reply({"run_id": "run-1", "state": "PENDING", **req["body"]})
        else:
            self._reply({"error": f"unexpected POST {req['path']}"}, 404)

    def log_message(self, *args):
        pass


@pytest.fixture
def kfp_server():
    FakeKFP.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeKFP)
    server.timeout = 5
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", FakeKFP.requests
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Path:
    return compile_pipeline("rlhf", tmp_path_factory.mktemp("compiled"), ClusterSettings())[0]


def _run_cli(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="rlhf")
    cli_cluster.add_submit_parser(parser.add_subparsers(required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_submit_sends_spec_parameters_and_token(kfp_server, package, tmp_path, monkeypatch, capsys):
    host, requests = kfp_server
    monkeypatch.setenv("KFP_TOKEN", "secret-token")
    params = tmp_path / "params.yaml"
    params.write_text("sft:\n  max_steps: 7\nppo:\n  steps: 3\nreport_to: none\n")

    rc = _run_cli(
        [
            "submit",
            "--host",
            host,
            "--package",
            str(package),
            "--params",
            str(params),
            "--namespace",
            "team-a",
            "--experiment",
            "rlhf-ci",
            "--run-name",
            "ci-1",
            "--wait",
            "--timeout",
            "30",
        ]
    )

    assert rc == 0
    out = capsys.readouterr().out
    assert f"{host}/#/runs/details/run-1" in out and "SUCCEEDED" in out
    assert all(r["auth"] == "Bearer secret-token" for r in requests)

    (exp,) = [r for r in requests if r["method"] == "POST" and r["path"] == "/apis/v2beta1/experiments"]
    assert exp["body"]["display_name"] == "rlhf-ci" and exp["body"]["namespace"] == "team-a"

    (run,) = [r for r in requests if r["method"] == "POST" and r["path"] == "/apis/v2beta1/runs"]
    body = run["body"]
    assert body["experiment_id"] == "exp-1" and body["display_name"] == "ci-1"
    ir, platform = yaml.safe_load_all(package.read_text())
    assert body["pipeline_spec"]["pipeline_spec"] == json.loads(json.dumps(ir))
    assert body["pipeline_spec"]["platform_spec"] == platform
    args = body["runtime_config"]["parameters"]
    assert set(args) == set(ir["root"]["inputDefinitions"]["parameters"])
    assert args["sft"]["max_steps"] == 7 and args["ppo"]["steps"] == 3 and args["report_to"] == "none"
    assert args["ppo"]["init_kl_coef"] == 0.2  # unset values are sent with their defaults
    assert any(r["path"].startswith("/apis/v2beta1/runs/run-1") for r in requests)  # --wait polled


def test_submit_rejects_unknown_parameters(kfp_server, package, tmp_path):
    host, requests = kfp_server
    params = tmp_path / "params.yaml"
    params.write_text("ppo:\n  stepz: 3\n")
    with pytest.raises(ValueError, match="stepz"):
        _run_cli(["submit", "--host", host, "--params", str(params), "--token", "t"])
    assert not [r for r in requests if r["path"] == "/apis/v2beta1/runs"]


def _run_request(requests: list[dict]) -> dict:
    (run,) = [r for r in requests if r["method"] == "POST" and r["path"] == "/apis/v2beta1/runs"]
    return run["body"]


@pytest.mark.parametrize("version, expected", [(None, "v-2"), ("rlhf-0-1-0-older", "v-1"), ("v-1", "v-1")])
def test_submit_runs_the_deployed_version(kfp_server, tmp_path, version, expected):
    host, requests = kfp_server
    params = tmp_path / "params.yaml"
    params.write_text("sft:\n  max_steps: 10\n")
    argv = [
        "submit",
        "--host",
        host,
        "--params",
        str(params),
        "--token",
        "t",
        "--namespace",
        "kubeflow-rlhf",
        "--service-account",
        "rlhf-pipeline-runner",
    ] + (["--version", version] if version else [])
    assert _run_cli(argv) == 0
    body = _run_request(requests)
    # A reference to what GitOps deployed (with the overlay's node pool), no spec of our own.
    assert body["pipeline_version_reference"] == {"pipeline_id": "p-rlhf", "pipeline_version_id": expected}
    assert "pipeline_spec" not in body or body["pipeline_spec"] is None
    assert body["service_account"] == "rlhf-pipeline-runner"
    args = body["runtime_config"]["parameters"]
    assert args["sft"]["max_steps"] == 10 and "dpo" not in args and args["ppo"]["init_kl_coef"] == 0.2


def test_submit_fails_clearly_without_a_deployed_pipeline(kfp_server):
    host, requests = kfp_server
    with pytest.raises(ValueError, match="no pipeline named 'rest'"):
        _run_cli(["submit", "--host", host, "--pipeline", "rest", "--token", "t"])
    with pytest.raises(ValueError, match="no version 'nope'"):
        _run_cli(["submit", "--host", host, "--version", "nope", "--token", "t"])
    assert not [r for r in requests if r["path"] == "/apis/v2beta1/runs"]


def test_each_pipeline_gets_only_the_sections_it_declares():
    from kfrlhf.pipelines.cluster.submit import _declared, _taken, pipeline_arguments

    root = ROOT / "pipelines" / "compiled"
    arguments = pipeline_arguments()
    names = ("rlhf", "dpo", "rlaif")
    declared = {n: _declared(next(yaml.safe_load_all((root / f"{n}.yaml").read_text()))) for n in names}
    assert not {"dpo", "rlaif"} & set(_taken(arguments, declared["rlhf"]))
    dpo = _taken(arguments, declared["dpo"])
    assert "ppo" not in dpo and "rlaif" not in dpo and dpo["dpo"] == arguments["dpo"]
    rlaif = _taken(arguments, declared["rlaif"])
    assert "dpo" not in rlaif and rlaif["rlaif"] == arguments["rlaif"] and rlaif["ppo"] == arguments["ppo"]


def test_ci_workflow_passes_params_as_a_file():
    """The workflow_dispatch input is YAML text: it is written to a file, and the run uses the deployed version."""
    wf = yaml.safe_load((ROOT / ".github" / "workflows" / "submit-run.yaml").read_text())
    steps = wf["jobs"]["submit"]["steps"]
    script = "\n".join(step.get("run", "") for step in steps)
    assert '--params "$PARAMS"' not in script and "--params params.yaml" in script
    assert "--package" not in script and "--package-file" not in script
