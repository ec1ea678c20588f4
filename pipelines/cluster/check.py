"""`rlhf cluster check`: what multi-node stages need from the cluster (docs/cluster.md, "What the cluster
needs"), read through the Kubernetes API with the kubeconfig's (or the pod's) credentials. One line per part:
`ok`, `missing` with how to install it, or `unknown` when the API would not say (no permission to read it).
"""

from __future__ import annotations

import json

TRAINER = "kubectl apply --server-side -k 'https://github.com/kubeflow/trainer.git/manifests/overlays/{}?ref=v2.3.0'"
# CRD name -> (what it is, how to install it).
CRDS = {
    "trainjobs.trainer.kubeflow.org": ("Kubeflow Trainer (TrainJob CRD)", TRAINER.format("manager")),
    "clustertrainingruntimes.trainer.kubeflow.org": ("Kubeflow Trainer (runtime CRD)", TRAINER.format("manager")),
    "jobsets.jobset.x-k8s.io": ("JobSet", "Trainer's manager overlay brings JobSet v0.12.0"),
    "workflows.argoproj.io": ("Argo Workflows (Kubeflow Pipelines 2.17)", "install Kubeflow Pipelines 2.17"),
}
RETRY_MARK = "kfrlhf-retry:"  # in the argo-retry component's expression (kfrlhf.launch.trainjob_run.RETRY_MESSAGE)


def _read(call) -> str:
    """'ok', 'missing' (404) or 'unknown: <reason>' for one API read."""
    from kubernetes.client import ApiException

    try:
        call()
    except ApiException as err:
        return "missing" if err.status == 404 else f"unknown: HTTP {err.status} {err.reason}"
    return "ok"


def check(runtime: str = "torch-distributed", kfp_namespace: str = "kubeflow") -> list[tuple[str, str, str]]:
    """(state, part, how to install it) for each part a multi-node stage needs."""
    from kubernetes import client

    from kfrlhf.launch.trainjob_run import clients

    custom, core = clients()
    crds = client.ApiextensionsV1Api(core.api_client)
    raw = dict(_preload_content=False)  # only whether it is there (and the ConfigMap's data)
    rows = [
        (_read(lambda name=name: crds.read_custom_resource_definition(name, **raw)), f"{what}: CRD {name}", install)
        for name, (what, install) in CRDS.items()
    ]
    state = _read(
        lambda: custom.get_cluster_custom_object(
            "trainer.kubeflow.org", "v1alpha1", "clustertrainingruntimes", runtime, **raw
        )
    )
    rows.append((state, f"ClusterTrainingRuntime {runtime}", TRAINER.format("runtimes")))
    configmap = {}
    state = _read(
        lambda: configmap.update(
            json.loads(core.read_namespaced_config_map("workflow-controller-configmap", kfp_namespace, **raw).data)
        )
    )
    configmap = configmap.get("data") or {}
    if state == "ok" and RETRY_MARK not in (configmap.get("workflowDefaults") or ""):
        state = "missing"
    where = f"{kfp_namespace}/workflow-controller-configmap"
    install = "add manifests/components/argo-retry to the kustomization that deploys KFP (docs/cluster.md)"
    rows.append((state, f"the argo-retry policy in {where} (preempted multi-node stages are retried)", install))
    return rows


def cmd_cluster_check(args) -> int:
    rows = check(args.runtime, args.kfp_namespace)
    for state, part, install in rows:
        print(f"{state.split(':')[0]:8} {part}" + (f": {state}" if ":" in state else ""))
        if state == "missing":
            print(f"         install: {install}")
    missing = [part for state, part, _ in rows if state != "ok"]
    print(f"{len(missing)} part(s) missing or unreadable" if missing else "the cluster has what multi-node stages need")
    return 1 if missing else 0


def add_cluster_parser(subparsers) -> None:
    p = subparsers.add_parser("cluster", help="check what the cluster gives the pipelines")
    sub = p.add_subparsers(dest="cluster_command", required=True)
    c = sub.add_parser(
        "check",
        help="Kubeflow Trainer, JobSet, the ClusterTrainingRuntime, Argo and its retry policy: present or missing",
        description="Reads the cluster through the Kubernetes API (kubeconfig, or the pod's service account).",
    )
    c.add_argument("--runtime", default="torch-distributed", help="the ClusterTrainingRuntime (default %(default)s)")
    c.add_argument("--kfp-namespace", default="kubeflow", help="KFP's namespace (default %(default)s)")
    c.set_defaults(func=cmd_cluster_check)
