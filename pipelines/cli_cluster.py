"""`rlhf compile` and `rlhf submit`: the cluster-facing subcommands, registered by kfrlhf.pipelines.cli."""

from __future__ import annotations

import argparse
import os
import sys

from kfrlhf.common.extras import require
from kfrlhf.pipelines import images
from kfrlhf.pipelines.stages import STAGES


def add_compile_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "compile",
        help="write the KFP IR and Kubernetes Pipeline/PipelineVersion manifests of every pipeline",
        description="Regenerate the committed copies with: rlhf compile --output pipelines/compiled "
        "--manifests manifests/base/pipelines --overlays manifests/overlays",
    )
    p.add_argument("--output", required=True, help="directory for <name>.yaml and <name>.k8s.yaml")
    p.add_argument("--manifests", help="also copy the .k8s.yaml files here, with a kustomization.yaml")
    p.add_argument(
        "--overlays",
        help="rename the PipelineVersions of these kustomize overlays after their rendered "
        "spec (their version-names component; needs kubectl)",
    )
    p.add_argument(
        "--registry",
        default=os.environ.get(images.REGISTRY_ENV, images.DEFAULT_REGISTRY),
        help=f"image registry (env {images.REGISTRY_ENV}; default %(default)s)",
    )
    p.add_argument(
        "--tag",
        default=os.environ.get(images.TAG_ENV, images.DEFAULT_TAG),
        help=f"image tag (env {images.TAG_ENV}; default %(default)s)",
    )
    p.add_argument(
        "--digest",
        action="append",
        default=[],
        metavar="TARGET=sha256:...",
        help="name a Dockerfile target's image by its pushed digest (repeatable)",
    )
    p.add_argument("--gpu-type", help="accelerator resource name for every GPU stage (default nvidia.com/gpu)")
    p.add_argument(
        "--gpus", action="append", default=[], metavar="STAGE=N", help="GPUs for one stage, e.g. ppo=2 (repeatable)"
    )
    p.add_argument("--no-caching", action="store_true", help="compile with KFP execution caching off")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        dest="overrides",
        help="a parameter default, or what is fixed at compile time: e.g. --set rest.iterations=5 (repeatable)",
    )
    p.set_defaults(func=_compile)
    return p


def _compile(args) -> int:
    require("kfp.kubernetes", "cluster", "rlhf compile")
    from kfrlhf.pipelines.compile import compile_all
    from kfrlhf.pipelines.platform import ClusterSettings
    from kfrlhf.pipelines.run_config import load_config

    config = load_config(overrides=args.overrides)
    settings = ClusterSettings(registry=args.registry, tag=args.tag, caching=not args.no_caching)
    for item in args.digest:
        target, _, digest = item.partition("=")
        if target not in STAGES or not digest.startswith("sha256:"):
            print(
                f"--digest {item!r}: expected STAGE=sha256:... with STAGE one of {', '.join(STAGES)}", file=sys.stderr
            )
            return 2
        settings.digests[target] = digest
    for res in settings.resources.values():
        res.gpu_type = args.gpu_type or res.gpu_type
    for item in args.gpus:
        stage, _, count = item.partition("=")
        if stage not in settings.resources or not count.isdigit():
            print(f"--gpus {item!r}: expected STAGE=N with STAGE in {', '.join(settings.resources)}", file=sys.stderr)
            return 2
        settings.resources[stage].gpus = int(count)
    for path in compile_all(args.output, settings, args.manifests, args.overlays, config):
        print(path)
    return 0


def add_submit_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("submit", help="start a pipeline run on a Kubeflow Pipelines endpoint")
    p.add_argument("--host", default=os.environ.get("KFP_HOST"), help="KFP API endpoint (env KFP_HOST)")
    p.add_argument("--pipeline", default="rlhf", help="the deployed pipeline's name (default %(default)s)")
    p.add_argument("--version", help="its version, by name or id (default: the newest)")
    p.add_argument("--package", metavar="FILE", help="run this compiled .yaml instead of a deployed version")
    p.add_argument("--params", help="YAML with one section per stage, as for `rlhf run --config`")
    p.add_argument("--preset", help="a built-in preset under the --params file, e.g. tiny")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--namespace", help="Kubeflow profile namespace (multi-user deployments)")
    p.add_argument("--experiment", default="rlhf")
    p.add_argument("--run-name")
    p.add_argument("--service-account", help="Kubernetes service account the run's pods use")
    p.add_argument("--token", help="bearer token (default: env KFP_TOKEN, then the service-account token file)")
    p.add_argument("--wait", action="store_true", help="wait for the run to finish; exit 1 unless it succeeded")
    p.add_argument("--timeout", type=float, default=24 * 3600, help="seconds to wait (default %(default)s)")
    p.set_defaults(func=_submit)
    return p


def _submit(args) -> int:
    from kfrlhf.pipelines.submit import submit

    if not args.host:
        print("rlhf submit: give --host or set KFP_HOST", file=sys.stderr)
        return 2
    url, state = submit(
        args.host,
        args.pipeline,
        args.params,
        namespace=args.namespace,
        experiment=args.experiment,
        run_name=args.run_name,
        token=args.token,
        wait=args.wait,
        timeout=args.timeout,
        service_account=args.service_account,
        preset=args.preset,
        overrides=args.overrides,
        version=args.version,
        package=args.package,
    )
    print(url)
    if state is not None:
        print(f"run finished: {state}")
        return 0 if state.upper() == "SUCCEEDED" else 1
    return 0
