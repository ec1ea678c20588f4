"""`rlhf compile`, `render-trainjob`, `images` and `submit`: the cluster-facing subcommands, registered by
kfrlhf.pipelines.cli."""

from __future__ import annotations

import argparse
import os
import re
import sys

from kfrlhf.common.extras import require
from kfrlhf.common.k8s_syntax import (
    DNS1123_SUBDOMAIN,
    IMAGE_NAME,
    IMAGE_TAG,
    LABEL_VALUE,
    QUALIFIED_NAME,
    argparse_type,
    is_image_digest,
    is_label_value,
    is_qualified_name,
)
from kfrlhf.pipelines.cluster import image_build, images
from kfrlhf.pipelines.definitions.stages import DISTRIBUTED_STAGES, ENTRY_POINTS, SPECS, STAGES


def add_image_options(p: argparse.ArgumentParser, tag_help: str | None = None) -> None:
    """--registry and --tag of the stage images (compile, render-trainjob, images, run --runner container); with
    `tag_help`, the tag's default is left to the command (None unless RLHF_IMAGE_TAG is set)."""
    p.add_argument(
        "--registry",
        default=os.environ.get(images.REGISTRY_ENV, images.DEFAULT_REGISTRY),
        type=argparse_type(IMAGE_NAME),  # the environment's value too: argparse parses a string default
        help=f"image registry (env {images.REGISTRY_ENV}; default %(default)s)",
    )
    p.add_argument(
        "--tag",
        default=os.environ.get(images.TAG_ENV, None if tag_help else images.DEFAULT_TAG),
        type=argparse_type(IMAGE_TAG),
        help=f"image tag (env {images.TAG_ENV}; {tag_help or 'default %(default)s'})",
    )


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
    add_image_options(p)
    p.add_argument(
        "--digest",
        action="append",
        default=[],
        metavar="TARGET=sha256:...",
        help="name a Dockerfile target's image by its pushed digest (repeatable)",
    )
    p.add_argument(
        "--gpu-type",
        type=argparse_type(QUALIFIED_NAME),
        help="accelerator resource name for every GPU stage (default nvidia.com/gpu)",
    )
    p.add_argument(
        "--gpus", action="append", default=[], metavar="STAGE=N", help="GPUs for one stage, e.g. ppo=2 (repeatable)"
    )
    p.add_argument(
        "--nodes",
        action="append",
        default=[],
        metavar="STAGE=N",
        help="run a training stage as a TrainJob of N nodes with its --gpus each, e.g. ppo=4 (repeatable)",
    )
    p.add_argument(
        "--gpu-node-selector",
        action="append",
        default=[],
        metavar="LABEL=VALUE",
        help="the GPU pool's node label, instead of nvidia.com/gpu.present=true (which needs GPU Feature "
        "Discovery), e.g. cloud.google.com/gke-accelerator=nvidia-h100-80gb (repeatable)",
    )
    p.add_argument(
        "--image-pull-secret",
        type=argparse_type(DNS1123_SUBDOMAIN),
        action="append",
        default=[],
        metavar="NAME",
        help="a docker-registry secret every pod and TrainJob node pulls its image with (repeatable)",
    )
    p.add_argument(
        "--nccl",
        action="append",
        default=[],
        metavar="NCCL_VAR=VALUE",
        help="NCCL env for every multi-GPU pod and TrainJob node, e.g. NCCL_SOCKET_IFNAME=eth0 (repeatable)",
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
    from kfrlhf.pipelines.cluster.compile import compile_all
    from kfrlhf.pipelines.cluster.platform import ClusterSettings
    from kfrlhf.pipelines.definitions.run_config import load_config

    config = load_config(overrides=args.overrides)
    settings = ClusterSettings(registry=args.registry, tag=args.tag, caching=not args.no_caching)
    for item in args.digest:
        target, _, digest = item.partition("=")
        if target not in STAGES or not is_image_digest(digest):
            print(
                f"--digest {item!r}: expected STAGE=sha256:... with STAGE one of {', '.join(STAGES)}", file=sys.stderr
            )
            return 2
        settings.digests[target] = digest
    for item in args.gpu_node_selector:
        label, _, value = item.partition("=")
        if not is_qualified_name(label) or not value or not is_label_value(value):
            print(
                f"--gpu-node-selector {item!r}: expected LABEL=VALUE, LABEL {QUALIFIED_NAME[1]} and VALUE "
                f"{LABEL_VALUE[1]}",
                file=sys.stderr,
            )
            return 2
    if args.gpu_node_selector:
        settings.node_selector = dict(item.partition("=")[::2] for item in args.gpu_node_selector)
    settings.image_pull_secrets = list(args.image_pull_secret)
    for item in args.nccl:
        name, _, value = item.partition("=")
        if not name.startswith("NCCL_") or not value:
            print(f"--nccl {item!r}: expected NCCL_VAR=VALUE", file=sys.stderr)
            return 2
        settings.nccl_env[name] = value
    for res in settings.resources.values():
        res.gpu_type = args.gpu_type or res.gpu_type
    for flag, items, field in (("--gpus", args.gpus, "gpus"), ("--nodes", args.nodes, "nodes")):
        for item in items:
            stage, _, count = item.partition("=")
            known = settings.resources if field == "gpus" else DISTRIBUTED_STAGES
            if stage not in known or not count.isdigit() or (field == "nodes" and int(count) < 1):
                print(f"{flag} {item!r}: expected STAGE=N with STAGE in {', '.join(known)}", file=sys.stderr)
                return 2
            setattr(settings.resources[stage], field, int(count))
    for path in compile_all(args.output, settings, args.manifests, args.overlays, config):
        print(path)
    return 0


def add_render_trainjob_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "render-trainjob",
        help="print the Kubeflow Trainer TrainJob a multi-node training stage creates",
        description="The stage's config comes from the defaults and --config files (its `distributed` "
        "section: processes per node, strategy, runtime); --nodes and --gpus-per-node override them.",
    )
    p.add_argument("--stage", required=True, choices=sorted(ENTRY_POINTS))
    p.add_argument("--nodes", type=int, required=True)
    p.add_argument("--gpus-per-node", type=int, required=True)
    p.add_argument("--config", action="append", default=[], metavar="FILE", help="YAML as for `rlhf run --config`")
    p.add_argument("--namespace", default="kubeflow-rlhf", help="the run's namespace (default %(default)s)")
    add_image_options(p)
    p.set_defaults(func=_render_trainjob)
    return p


def render_trainjob(stage: str, nodes: int, gpus_per_node: int, files=(), namespace="kubeflow-rlhf", **kw) -> dict:
    """The TrainJob `stage` creates with `nodes` nodes of `gpus_per_node` GPUs (paths as on a cluster)."""
    import dataclasses

    from kfrlhf.common.config import from_dict
    from kfrlhf.launch.config import DistributedConfig
    from kfrlhf.launch.trainjob_run import build_trainjob, job_name, workdir_of
    from kfrlhf.pipelines.cluster.platform import ClusterSettings, node_template
    from kfrlhf.pipelines.definitions.run_config import load_config

    section = getattr(load_config(None, list(files)), stage)
    values = {**dataclasses.asdict(section.distributed), "nodes": nodes}
    dist = from_dict(DistributedConfig, values, f"{stage}.distributed")
    settings = ClusterSettings(**kw)
    settings.resources[stage].gpus = gpus_per_node
    template = node_template(settings, stage)
    output = f"/{stage}/output"  # stands for the task's output artifact
    workdir = workdir_of(template, output)
    return build_trainjob(ENTRY_POINTS[stage], stage, dist, template, workdir, job_name(stage, output), namespace)


def _render_trainjob(args) -> int:
    import yaml

    job = render_trainjob(
        args.stage, args.nodes, args.gpus_per_node, args.config, args.namespace, registry=args.registry, tag=args.tag
    )
    print(yaml.safe_dump(job, sort_keys=False), end="")
    return 0


def add_images_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "images",
        help="build (and push) every stage image from images/Dockerfile, run from the repository root",
        description="One build per stage: the Dockerfile's `stage` target with the build arguments of the flavour "
        "and of the stage's spec, by buildah, podman or docker (the first here). --dry-run prints the commands.",
    )
    add_image_options(
        p, tag_help=f"default {images.default_tag('cuda')}, {images.default_tag('cpu')} for --flavour cpu"
    )
    p.add_argument("--flavour", choices=list(images.FLAVOURS), default="cuda", help="cuda (default) or cpu")
    p.add_argument(
        "--base-image",
        help=f"the runtime's base image (default: the flavour's; for cpu, {images.FLAVOURS['cpu']['BASE_IMAGE']}, "
        "made with mmdebstrap when absent)",
    )
    p.add_argument("--torch-index", help="the index torch comes from (default: the flavour's)")
    p.add_argument("--builder", choices=list(image_build.BUILDERS), help="default: the first of these on PATH")
    p.add_argument("--stage", action="append", choices=STAGES, help="only these stages (repeatable)")
    p.add_argument("--log-dir", default="runs/images", help="each stage's build log (default %(default)s)")
    p.add_argument("--push", action="store_true", help="push each image once built")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    p.set_defaults(func=_images)
    return p


def _images(args) -> int:
    import shlex
    import time
    from pathlib import Path

    tag = args.tag or images.default_tag(args.flavour)
    stages = args.stage or STAGES
    log_dir = Path(args.log_dir)
    given = {"BASE_IMAGE": args.base_image, "TORCH_INDEX": args.torch_index}
    commit = image_build.git_commit(Path.cwd())
    try:
        builder = image_build.find_builder(args.builder) if not args.dry_run else (args.builder or "docker")
        mounts, overrides, note = [], {}, ""
        if not args.dry_run:
            log_dir.mkdir(parents=True, exist_ok=True)  # pip.conf beside the logs: the same mounts at every build
            mounts, overrides, note = image_build.host_mounts(builder, args.flavour, log_dir)
            print(f"rlhf images: {args.flavour} flavour, {len(stages)} images by {builder} from {commit}; {note}")
            base = args.base_image or images.FLAVOURS[args.flavour]["BASE_IMAGE"]
            if args.flavour == "cpu" and not args.base_image and not image_build.image_exists(builder, base):
                print(f"rlhf images: making the base {base} with mmdebstrap (a few minutes)", flush=True)
                print(f"rlhf images: base done in {image_build.make_base(builder, base, log_dir / 'base.log'):.0f} s")
        overrides.update({k: v for k, v in given.items() if v})
        started = time.time()
        for i, stage in enumerate(stages, 1):
            build_args = images.build_args(stage, args.flavour, commit, **overrides)
            build = images.build_command(stage, args.registry, tag, builder, build_args, tuple(mounts))
            commands = [build] + ([[builder, "push", build[-2]]] if args.push else [])
            if args.dry_run:
                print("\n".join(shlex.join(c) for c in commands))
                continue
            print(f"[{i}/{len(stages)}] {build[-2]} (base {SPECS[stage].image_base})", flush=True)
            log = log_dir / f"{stage}.log"
            log.write_text("")
            seconds = sum(image_build.run_build(c, log, f"{stage}'s image", _say) for c in commands)
            print(f"[{i}/{len(stages)}] {stage} done in {seconds:.0f} s", flush=True)
    except image_build.BuildError as err:
        print(f"rlhf images: {err}", file=sys.stderr)
        return 1
    if not args.dry_run:
        print(f"rlhf images: {len(stages)} images in {time.time() - started:.0f} s; logs in {log_dir}")
    return 0


def _say(line: str) -> None:
    print(line, flush=True)


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
    p.add_argument(
        "--timeout",
        type=float,
        default=24 * 3600,
        help="seconds the whole command may take, each API call and --wait included (default %(default)s)",
    )
    p.set_defaults(func=_submit)
    return p


def _submit(args) -> int:
    import time

    started = time.monotonic()  # --timeout bounds the whole command, loading the KFP client included
    from kfrlhf.pipelines.cluster.submit import submit

    if not args.host:
        print("rlhf submit: give --host or set KFP_HOST", file=sys.stderr)
        return 2
    if not re.fullmatch(r"https?://[^\s/:]+(:[0-9]+)?(/\S*)?", args.host):
        print(f"rlhf submit: error: --host {args.host!r} is not a URL: give http(s)://HOST[:PORT]", file=sys.stderr)
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
        timeout=args.timeout - (time.monotonic() - started),
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
