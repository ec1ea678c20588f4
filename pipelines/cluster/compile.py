"""Compile every pipeline for a cluster: KFP IR YAML and Kubernetes-native manifests.

For each entry of PIPELINES, `compile_all` writes into the output directory
  <name>.yaml      the KFP IR (upload it in the Kubeflow UI or with `kfp pipeline create`)
  <name>.k8s.yaml  a `Pipeline` + `PipelineVersion` (pipelines.kubeflow.org/v2beta1) for
                   KFP's Kubernetes-native API mode, applied by kubectl or a GitOps tool
and, when a manifests directory is given, copies the `.k8s.yaml` files there with a
kustomization.yaml listing them (kustomize loads nothing outside its root).
Output is deterministic so that the committed copy can be checked for drift:
  rlhf compile --output pipelines/compiled --manifests manifests/base/pipelines --overlays manifests/overlays
A PipelineVersion is immutable, so its name carries a hash of its spec. An overlay that patches the
spec lists the component `version-names` (written by `--overlays`, with kubectl) that renames each
version after the spec the overlay renders.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path

import yaml
from kfp import compiler
from kfp.compiler.compiler_utils import KubernetesManifestOptions
from kfp.compiler.pipeline_spec_builder import extract_comments_from_pipeline_spec

from kfrlhf.common.outputs import OutputRefused, check_output_dir, mark
from kfrlhf.pipelines.cluster.images import image_repository
from kfrlhf.pipelines.cluster.platform import DISTRIBUTED_STAGES, ClusterSettings, make_configure
from kfrlhf.pipelines.definitions.registry import PIPELINES
from kfrlhf.pipelines.definitions.run_config import RunConfig


def version_name(name: str, tag: str, pipeline_spec: dict, platform_spec: dict) -> str:
    """A PipelineVersion name that changes with the spec (versions are immutable in KFP)."""
    slug = re.sub(r"[^a-z0-9-]+", "-", f"{name}-{tag}".lower()).strip("-")
    spec = json.dumps(_canonical([pipeline_spec, platform_spec]), sort_keys=True).encode()
    return f"{slug[:50]}-{hashlib.sha256(spec).hexdigest()[:8]}"


class _Yaml12Loader(yaml.SafeLoader):
    """PyYAML reads YAML 1.1, where kubectl's `5e-06` is a string; the API server reads it as a float."""


_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+$"), list("-+0123456789.")
)


def load_rendered(text: str) -> list[dict]:
    """The objects of `kubectl kustomize` output, numbers read as the API server reads them."""
    return [doc for doc in yaml.load_all(text, Loader=_Yaml12Loader) if doc]


def _canonical(obj):
    """The same value however YAML spelled it: kustomize writes the float 2.0 as 2."""
    if isinstance(obj, dict):
        return {k: _canonical(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_canonical(v) for v in obj]
    return int(obj) if isinstance(obj, float) and obj.is_integer() else obj


def _stable_header(path: Path, description: str | None) -> None:
    """Rewrite kfp's comment header from the key-sorted spec: kfp renders dict defaults in
    protobuf map order, which changes from one process to the next."""
    lines = path.read_text().splitlines(keepends=True)
    n = next(i for i, line in enumerate(lines) if not line.startswith("#"))
    body = "".join(lines[n:])
    spec = next(yaml.safe_load_all(body))
    path.write_text(extract_comments_from_pipeline_spec(spec, description) + body)


# Argo CD sync waves: the Pipeline exists before its versions are applied.
SYNC_WAVES = {"Pipeline": "1", "PipelineVersion": "2"}


def _fix_pipeline_manifest(path: Path, name: str) -> None:
    """Name the Pipeline by its name (the API's display_name filter, which `rlhf submit` uses, reads
    spec.displayName only) and add the sync waves."""
    docs = list(yaml.safe_load_all(path.read_text()))
    for doc in docs:
        doc["metadata"].setdefault("annotations", {})["argocd.argoproj.io/sync-wave"] = SYNC_WAVES[doc["kind"]]
        if doc["kind"] == "Pipeline":
            doc["spec"]["displayName"] = name
    with path.open("w") as f:
        yaml.safe_dump_all(docs, f, sort_keys=True)


def multi_node_defaults(func, settings: ClusterSettings, config: RunConfig | None) -> dict | None:
    """Pipeline parameter defaults for the stages compiled as TrainJob launchers (`nodes` > 1): their
    `distributed.nodes` set to match, so that a run with the defaults uses the nodes it was compiled for."""
    defaults, params = (config or RunConfig()).to_dict(), {}
    for stage in DISTRIBUTED_STAGES:
        nodes = settings.resources[stage].nodes
        if nodes > 1 and stage in func.component_spec.inputs:
            params[stage] = {**defaults[stage], "distributed": {**defaults[stage]["distributed"], "nodes": nodes}}
    return params or None


def compile_pipeline(name: str, output_dir: Path, settings: ClusterSettings, config=None) -> list[Path]:
    """`config`: the RunConfig the parameters' defaults (and ReST's unrolled iterations) come from."""
    func = PIPELINES[name](make_configure(settings), config)
    ir_path = output_dir / f"{name}.yaml"
    k8s_path = output_dir / f"{name}.k8s.yaml"
    params = multi_node_defaults(func, settings, config)
    compiler.Compiler().compile(func, str(ir_path), pipeline_parameters=params)
    _stable_header(ir_path, func.description)
    options = KubernetesManifestOptions(
        pipeline_name=name,
        pipeline_version_name=version_name(name, settings.tag, *yaml.safe_load_all(ir_path.read_text())),
        include_pipeline_manifest=True,
    )
    manifest = dict(kubernetes_manifest_options=options, kubernetes_manifest_format=True)
    compiler.Compiler().compile(func, str(k8s_path), pipeline_parameters=params, **manifest)
    _fix_pipeline_manifest(k8s_path, name)
    return [ir_path, k8s_path]


# The first line of every component `--overlays` writes: what it may overwrite.
VERSION_NAMES_HEADER = "# Written by `rlhf compile --overlays`; do not edit.\n"


def _write_version_names(overlay: Path, patches: list[dict]) -> Path:
    path = overlay / "version-names" / "kustomization.yaml"
    component = {"apiVersion": "kustomize.config.k8s.io/v1alpha1", "kind": "Component", "patches": patches}
    path.parent.mkdir(exist_ok=True)
    path.write_text(VERSION_NAMES_HEADER + yaml.safe_dump(component, sort_keys=False, width=200))
    return path


def name_overlay_versions(overlay: Path, tag: str) -> Path:
    """Write `<overlay>/version-names/`: a component renaming each PipelineVersion the overlay
    renders after its rendered spec. The renames change no spec, so the overlay renders with them."""
    out = subprocess.run(["kubectl", "kustomize", str(overlay)], capture_output=True, text=True, check=True)
    patches = []
    for doc in load_rendered(out.stdout):
        if doc["kind"] == "PipelineVersion":
            spec = doc["spec"]
            new = version_name(spec["pipelineName"], tag, spec["pipelineSpec"], spec["platformSpec"])
            ops = [{"op": "replace", "path": p, "value": new} for p in ("/metadata/name", "/spec/displayName")]
            target = {"group": "pipelines.kubeflow.org", "kind": "PipelineVersion", "name": doc["metadata"]["name"]}
            patches.append({"target": target, "patch": json.dumps(ops)})
    return _write_version_names(overlay, patches)


def overlays_to_name(overlays_dir: str | Path) -> list[Path]:
    """The overlays under `overlays_dir` that list the version-names component. OutputRefused, before any
    work, when the directory is missing or a `version-names/` holds anything `--overlays` did not write."""
    overlays_dir = Path(overlays_dir)
    if not overlays_dir.is_dir():
        raise OutputRefused(f"--overlays {overlays_dir} is not a directory of kustomize overlays")
    named = []
    for overlay in sorted(p for p in overlays_dir.iterdir() if (p / "kustomization.yaml").is_file()):
        if "version-names" not in (yaml.safe_load((overlay / "kustomization.yaml").read_text()) or {}).get(
            "components", []
        ):
            continue
        folder = overlay / "version-names"
        foreign = sorted(p.name for p in folder.iterdir() if p.name != "kustomization.yaml") if folder.is_dir() else []
        component = folder / "kustomization.yaml"
        if component.exists() and not component.read_text().startswith(VERSION_NAMES_HEADER):
            foreign.append("kustomization.yaml (not written by rlhf compile --overlays)")
        if foreign or (folder.exists() and not folder.is_dir()):
            raise OutputRefused(
                f"--overlays: {folder} holds what rlhf compile did not write ({', '.join(foreign) or 'a file'}): "
                "move it away or drop `version-names` from the overlay's components; nothing was changed"
            )
        named.append(overlay)
    return named


def _name_overlays(overlays: list[Path], tag: str) -> list[Path]:
    """Each overlay's version names, from scratch: the component is emptied before the overlay is rendered."""
    written = []
    for overlay in overlays:
        _write_version_names(overlay, [])
        written.append(name_overlay_versions(overlay, tag))
    return written


def compile_all(
    output_dir: str | Path,
    settings: ClusterSettings | None = None,
    manifests_dir: str | Path | None = None,
    overlays_dir: str | Path | None = None,
    config=None,
) -> list[Path]:
    """Compile every pipeline in PIPELINES (defaults from `config`, a RunConfig); return the paths written."""
    settings = settings or ClusterSettings()
    # Only into new directories or ones holding nothing but what compile wrote there (its marker lists the
    # files): a user's file is never replaced, whatever its name.
    output_dir = check_output_dir(output_dir, "compile", names=True)
    if manifests_dir is not None:
        manifests_dir = check_output_dir(manifests_dir, "compile", names=True, flag="--manifests")
        if manifests_dir.resolve() == output_dir.resolve():
            raise OutputRefused(
                f"--manifests {manifests_dir} is the --output folder: give a folder of its own (it gets copies of "
                "the .k8s.yaml files and a kustomization.yaml listing them)"
            )
    overlays = overlays_to_name(overlays_dir) if overlays_dir is not None else []
    output_dir.mkdir(parents=True, exist_ok=True)
    written = [p for name in PIPELINES for p in compile_pipeline(name, output_dir, settings, config)]
    mark(output_dir, "compile", [p.name for p in written])
    if manifests_dir is not None:
        copies = _copy_manifests([p for p in written if p.name.endswith(".k8s.yaml")], manifests_dir, settings)
        mark(manifests_dir, "compile", [p.name for p in copies])
        written += copies
    written += _name_overlays(overlays, settings.tag)
    return written


def _copy_manifests(k8s_files: list[Path], manifests_dir: Path, settings: ClusterSettings) -> list[Path]:
    """The `.k8s.yaml` copies and a Component listing them that also points the base's cache-init hook at
    the compiled data image (registry, tag or digest): the base lists it under `components:`, so its
    `images:` reaches the hook's Job."""
    manifests_dir.mkdir(parents=True, exist_ok=True)
    copies = [Path(shutil.copyfile(src, manifests_dir / src.name)) for src in k8s_files]
    data = {"name": image_repository("data"), "newName": image_repository("data", settings.registry)}
    digest = settings.digests.get("data")
    data.update({"digest": digest} if digest else {"newTag": settings.tag})
    kustomization = manifests_dir / "kustomization.yaml"
    kustomization.write_text(
        "# Written by `rlhf compile`; do not edit.\n"
        + yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1alpha1",
                "kind": "Component",
                "resources": sorted(p.name for p in copies),
                "images": [data],
            },
            sort_keys=False,
        )
    )
    return copies + [kustomization]
