"""The Argo Workflow a KFP 2.17 cluster would run, from the backend's own compiler.

`../shared/tools/kfp-argo-compile` (kubeflow/pipelines 2.17.0 argocompiler, offline) turns every
compiled pipeline and every overlay's PipelineVersion into the Workflow the API server creates.
Per stage the Workflow hands its driver the container (image, GPU) and the Kubernetes config (node
selector, tolerations, secrets, PVC, security context, deadline) that become the pod spec patch;
the executor template carries the retry strategy, which Argo merges with the workflow-controller's
templateDefaults. `argo_decides` follows Argo v4.0.5's processNodeRetries
(workflow/controller/operator.go) to say whether a failed attempt is retried.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from kfrlhf.pipelines.cluster.compile import load_rendered
from kfrlhf.pipelines.cluster.images import image_for
from kfrlhf.pipelines.cluster.platform import ClusterSettings, retry_window
from kfrlhf.pipelines.definitions.registry import PIPELINES
from kfrlhf.pipelines.definitions.stages import METHODS, SPECS
from tests.conftest import KUBECTL, needs

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT.parent / "shared" / "tools" / "kfp-argo-compile" / "kfp-argo-compile"
COMPILED = sorted(p for p in (ROOT / "pipelines" / "compiled").glob("*.yaml") if not p.name.endswith(".k8s.yaml"))
OVERLAYS = sorted(p.name for p in (ROOT / "manifests" / "overlays").iterdir() if (p / "kustomization.yaml").exists())
RETRY_COMPONENT = ROOT / "manifests" / "components" / "argo-retry"
# What an overlay adds to every GPU executor: node selector labels, toleration keys.
OVERLAY_POOL = {"gpu-cluster": ({"node-pool": "rlhf-gpu"}, {"dedicated"})}
# Executor label -> stage, for image and resources.
EXECUTOR_STAGES = {
    "exec-prepare-data": "data",
    "exec-sft": "sft",
    "exec-merge": "merge",
    "exec-merge-onto": "merge",
    "exec-rlaif": "rlaif",
    "exec-reward": "reward",
    # Each tuning method's task (ReST's below).
    **{f"exec-{m}": m for m in METHODS if m not in ("sft", "rest")},
    # ReST's Grow and Improve tasks, one pair per unrolled iteration (3 as committed).
    **{f"exec-rest-{kind}{n}": "rest" for kind in ("grow", "improve") for n in ("", "-2", "-3")},
    "exec-evaluate": "eval",
    "exec-gate": "gate",
    "exec-promote": "serve",
}
# KFP 2.17.0 manifests/kustomize/third-party/argo/base/workflow-controller-configmap-patch.yaml.
KFP_TEMPLATE_DEFAULTS = {"limit": "2", "retryPolicy": "OnError"}
HOUR = 3600

pytestmark = [
    needs(TOOL, "kfp-argo-compile (KFP 2.17.0's backend compiler, built from upstream)"),
    needs("kubectl", KUBECTL),
]


def _compile(path: Path) -> dict:
    out = subprocess.run([str(TOOL), str(path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "STRICT parse" not in out.stderr and "NOTE:" not in out.stderr, out.stderr
    return yaml.safe_load(out.stdout)


def _overlay_versions(overlay: str, tmp: Path) -> dict[str, Path]:
    out = subprocess.run(
        ["kubectl", "kustomize", str(ROOT / "manifests" / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    files = {}
    for doc in load_rendered(out.stdout):
        if doc["kind"] == "PipelineVersion":
            path = tmp / f"{overlay}-{doc['spec']['pipelineName']}.yaml"
            path.write_text(yaml.safe_dump_all([doc["spec"]["pipelineSpec"], doc["spec"]["platformSpec"]]))
            files[doc["spec"]["pipelineName"]] = path
    return files


def stage_pods(wf: dict) -> dict[str, dict]:
    """Executor label -> what the driver and Argo get for it: container, k8s config, retry, template."""
    params = {p["name"]: p["value"] for p in wf["spec"]["arguments"]["parameters"]}
    templates = {t["name"]: t for t in wf["spec"]["templates"]}
    tasks = {t["name"]: t for tmpl in templates.values() for t in tmpl.get("dag", {}).get("tasks", [])}
    pods = {}
    for name, task in tasks.items():
        if not name.endswith("-driver") or task["template"] != "system-container-driver":
            continue
        args = {a["name"]: a["value"] for a in task["arguments"]["parameters"]}
        resolve = lambda ref: json.loads(params[ref[len("{{workflow.parameters.") : -2]])  # noqa: E731
        executor = tasks[name[: -len("-driver")]]
        outer = templates[executor["template"]]
        impl = templates[outer["dag"]["tasks"][0]["template"]]
        values = {a["name"]: a["value"] for a in executor["arguments"]["parameters"]}
        pods[resolve(args["component"])["executorLabel"]] = {
            "container": resolve(args["container"]),
            "k8s": resolve(args["kubernetes-config"]),
            "retry": _substitute(impl["retryStrategy"], values),
            "template": impl,
        }
    return pods


def _substitute(obj, values: dict):
    if isinstance(obj, dict):
        return {k: _substitute(v, values) for k, v in obj.items()}
    return re.sub(r"\{\{inputs\.parameters\.([^}]+)\}\}", lambda m: values[m[1]], obj)


def _merge_defaults(strategy: dict, defaults: dict) -> dict:
    """Argo merges templateDefaults into each template; the template's own fields win."""
    return {**defaults, **strategy}


def _expr(expression: str, scope: dict) -> bool:
    """The expr-lang subset the retry component uses: ||, &&, !, ==, in [...], contains."""
    py = re.sub(r"(lastRetry\.\w+) contains (\"[^\"]*\")", r"(\2 in \1)", expression)
    py = py.replace("||", " or ").replace("&&", " and ").replace("!(", " not (").replace("lastRetry.", "lastRetry_")
    return bool(eval(py, {}, {f"lastRetry_{k}": v for k, v in scope.items()}))  # noqa: S307 (our own string)


def argo_decides(strategy: dict, attempts: list[dict]) -> str:
    """'retry' or why not, for a node whose last attempt just ended, once its backoff has passed."""
    first, last, n = attempts[0], attempts[-1], len(attempts)
    backoff = strategy.get("backoff")
    if backoff:
        deadline = first["start"] + float(backoff["maxDuration"])
        wait = float(backoff["duration"]) * float(backoff["factor"]) ** (n - 1)
        if last["end"] > deadline:
            return "Max duration limit exceeded"
        if last["end"] + wait > deadline:
            return "Backoff would exceed max duration limit"
    policy = strategy.get("retryPolicy") or ("Always" if strategy.get("expression") else "OnFailure")
    on_failed, on_error = {"Always": (True, True), "OnFailure": (True, False), "OnError": (False, True)}[policy]
    if (last["phase"] == "Failed" and not on_failed) or (last["phase"] == "Error" and not on_error):
        return f"not retried: {last['phase']} under {policy}"
    if n > int(strategy["limit"]):
        return "No more retries left"
    scope = {"status": last["phase"], "exitCode": last["exit"], "message": last["message"]}
    if strategy.get("expression") and not _expr(strategy["expression"], scope):
        return "retryStrategy.expression evaluated to false"
    return "retry"


def _killed(hours: float, exit_code: int = 143, reason: str = "Error", phase: str = "Failed") -> dict:
    return {
        "start": 0.0,
        "end": hours * HOUR,
        "phase": phase,
        "exit": str(exit_code),
        "message": f"{reason} (exit code {exit_code})",
    }


@pytest.fixture(scope="module")
def component_defaults(tmp_path_factory) -> dict:
    """templateDefaults.retryStrategy once manifests/components/argo-retry patches KFP's configmap."""
    tmp = tmp_path_factory.mktemp("kfp-argo")
    defaults = {"spec": {"templateDefaults": {"retryStrategy": KFP_TEMPLATE_DEFAULTS}}}
    stock = {"workflowDefaults": yaml.safe_dump(defaults)}
    (tmp / "cm.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "data": stock,
                "metadata": {"name": "workflow-controller-configmap"},
            }
        )
    )
    (tmp / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {"namespace": "kubeflow", "resources": ["cm.yaml"], "components": [os.path.relpath(RETRY_COMPONENT, tmp)]}
        )
    )
    out = subprocess.run(
        ["kubectl", "kustomize", str(tmp), "--load-restrictor", "LoadRestrictionsNone"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    defaults = yaml.safe_load(yaml.safe_load(out.stdout)["data"]["workflowDefaults"])["spec"]
    assert defaults["ttlStrategy"]  # the rest of KFP's workflowDefaults is kept
    return defaults["templateDefaults"]["retryStrategy"]


@pytest.fixture(scope="module")
def workflows(tmp_path_factory) -> dict[str, tuple[dict, str | None]]:
    """'<pipeline>' and '<overlay>/<pipeline>' -> (Workflow, overlay or None)."""
    tmp = tmp_path_factory.mktemp("wf")
    out = {p.stem: (_compile(p), None) for p in COMPILED}
    for overlay in OVERLAYS:
        for pipeline, path in _overlay_versions(overlay, tmp).items():
            out[f"{overlay}/{pipeline}"] = (_compile(path), overlay)
    return out


def test_every_pipeline_and_overlay_compiles(workflows):
    assert {p.stem for p in COMPILED} == set(PIPELINES)
    assert {f"{o}/{p}" for o in OVERLAYS for p in PIPELINES} <= set(workflows)


def test_stage_pods(workflows):
    s = ClusterSettings()
    for key, (wf, overlay) in workflows.items():
        pods = stage_pods(wf)
        # Nine pod templates; RLAIF adds its labelling stage; ReST's rounds share one Grow and one Improve
        # template (their specs are the same).
        assert set(pods) <= set(EXECUTOR_STAGES) and len(pods) == (10 if key.endswith(("rest", "rlaif")) else 9), key
        for label, pod in pods.items():
            stage, where = EXECUTOR_STAGES[label], f"{key}: {label}"
            res, cfg, container = s.resources[stage], pod["k8s"], pod["container"]
            assert container["image"] == image_for(stage), where
            gpus = container["resources"].get("accelerator", {})
            assert int(gpus.get("resourceCount", 0)) == res.gpus, where
            assert gpus.get("resourceType", "nvidia.com/gpu") == "nvidia.com/gpu", where
            labels, tol_keys = OVERLAY_POOL.get(overlay, ({}, set()))
            if res.gpus:
                assert cfg["nodeSelector"]["labels"] == {**s.node_selector, **labels}, where
                assert {t["key"] for t in cfg["tolerations"]} == {"nvidia.com/gpu"} | tol_keys, where
                assert all(t["effect"] == "NoSchedule" for t in cfg["tolerations"]), where
            else:
                assert "nodeSelector" not in cfg and "tolerations" not in cfg, where
            secrets = {
                e["secretName"]: (e["optional"], {k["secretKey"]: k["envVar"] for k in e["keyToEnv"]})
                for e in cfg["secretAsEnv"]
            }
            assert secrets == {name: (True, keys) for name, keys in s.secret_env.items()}, where
            assert [(m["constant"], m["mountPath"]) for m in cfg["pvcMount"]] == [(s.cache_pvc, s.cache_mount_path)]
            assert cfg["securityContext"] == {"runAsUser": "1000", "runAsGroup": "1000", "runAsNonRoot": True}, where
            assert int(cfg["activeDeadlineSeconds"]) == res.timeout_seconds, where
            assert pod["retry"] == {
                "limit": str(s.retries),
                "backoff": {
                    "duration": str(s.backoff_seconds),
                    "factor": f"{s.backoff_factor:g}",
                    "maxDuration": str(retry_window(s, res)),
                },
            }, where
            main = pod["template"]["container"]["securityContext"]
            assert main["allowPrivilegeEscalation"] is False and main["capabilities"]["drop"] == ["ALL"], where
            assert main["seccompProfile"]["type"] == "RuntimeDefault", where
        assert wf["spec"]["securityContext"]["runAsNonRoot"] is True, key


def test_backend_requests_no_ephemeral_storage(workflows):
    """docs/cluster.md, "Large artifacts": the launcher stages artifacts in unsized emptyDirs; no
    ephemeral-storage request reaches the pod (the IR and the platform spec cannot carry one)."""
    wf, _ = workflows["rlhf"]
    for pod in stage_pods(wf).values():
        scratch = {v["name"]: v for v in pod["template"]["volumes"]}
        assert {"minio-scratch", "s3-scratch", "gcs-scratch"} <= set(scratch)
        assert all(v["emptyDir"] == {} for v in scratch.values())
        assert "ephemeral" not in json.dumps(pod["container"]["resources"]).lower()


def test_sigterm_at_hour_5_is_retried_with_the_retry_component(workflows, component_defaults):
    for key, (wf, _) in workflows.items():
        for label, pod in stage_pods(wf).items():
            if SPECS[EXECUTOR_STAGES[label]].resources.timeout_seconds < 24 * 3600:  # the 24 h training stages
                continue
            strategy = _merge_defaults(pod["retry"], component_defaults)
            where = f"{key}: {label}"
            assert argo_decides(strategy, [_killed(5)]) == "retry", where
            assert argo_decides(strategy, [_killed(5), _killed(5)]) == "retry", where  # second preemption
            assert argo_decides(strategy, [_killed(5), _killed(5), _killed(5)]) == "No more retries left", where
            assert argo_decides(strategy, [_killed(5, 137)]) == "retry", where  # grace period ran out
            assert argo_decides(strategy, [_killed(5, 137, "OOMKilled")]) != "retry", where
            assert argo_decides(strategy, [_killed(5, 1)]) != "retry", where  # diverged, quality gate, bad input
            error = {**_killed(5, -1), "phase": "Error", "message": "pod deleted"}
            assert argo_decides(strategy, [error]) == "retry", where


def test_stock_kfp_never_retries_our_exit(workflows, component_defaults):
    """Why the component exists, and why the backoff window follows the timeouts."""
    wf, _ = workflows["rlhf"]
    ppo = stage_pods(wf)["exec-ppo"]["retry"]
    stock = _merge_defaults(ppo, KFP_TEMPLATE_DEFAULTS)
    assert argo_decides(stock, [_killed(5)]) == "not retried: Failed under OnError"
    old = {**ppo, "backoff": {**ppo["backoff"], "maxDuration": "3600"}}  # kfp's default, the old setting
    assert argo_decides(_merge_defaults(old, component_defaults), [_killed(5)]) == "Max duration limit exceeded"
    assert argo_decides(_merge_defaults(old, component_defaults), [_killed(0.5)]) == "retry"
