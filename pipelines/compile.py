"""Compile every pipeline for a cluster: KFP IR YAML and Kubernetes-native manifests.

For each entry of PIPELINES, `compile_all` writes into the output directory
  <name>.yaml      the KFP IR (upload it in the Kubeflow UI or with `kfp pipeline create`)
  <name>.k8s.yaml  a `Pipeline` + `PipelineVersion` (pipelines.kubeflow.org/v2beta1) for
                   KFP's Kubernetes-native API mode, applied by kubectl or a GitOps tool
and, when a manifests directory is given, copies the `.k8s.yaml` files there with a
kustomization.yaml listing them (kustomize loads nothing outside its root).
Output is deterministic so that the committed copy can be checked for drift:
  rlhf compile --output pipelines/compiled --manifests manifests/base/pipelines
"""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

import yaml
from kfp import compiler
from kfp.compiler.compiler_utils import KubernetesManifestOptions
from kfp.compiler.pipeline_spec_builder import extract_comments_from_pipeline_spec

from kfrlhf.pipelines.platform import ClusterSettings, make_configure
from kfrlhf.pipelines.registry import PIPELINES


def _version_name(name: str, tag: str, ir: bytes) -> str:
    """A PipelineVersion name that changes with the spec (versions are immutable in KFP)."""
    slug = re.sub(r"[^a-z0-9-]+", "-", f"{name}-{tag}".lower()).strip("-")
    return f"{slug[:50]}-{hashlib.sha256(ir).hexdigest()[:8]}"


def _stable_header(path: Path, description: str | None) -> None:
    """Rewrite kfp's comment header from the key-sorted spec: kfp renders dict defaults in
    protobuf map order, which changes from one process to the next."""
    lines = path.read_text().splitlines(keepends=True)
    n = next(i for i, line in enumerate(lines) if not line.startswith("#"))
    body = "".join(lines[n:])
    spec = next(yaml.safe_load_all(body))
    path.write_text(extract_comments_from_pipeline_spec(spec, description) + body)


def _fix_pipeline_manifest(path: Path) -> None:
    """Drop `Pipeline.spec.displayName`: the v2beta1 Pipeline CRD only has `spec.description`,
    so kubectl's default strict field validation would reject the object."""
    docs = list(yaml.safe_load_all(path.read_text()))
    for doc in docs:
        if doc["kind"] == "Pipeline":
            doc["spec"].pop("displayName", None)
    with path.open("w") as f:
        yaml.safe_dump_all(docs, f, sort_keys=True)


def compile_pipeline(name: str, output_dir: Path, settings: ClusterSettings) -> list[Path]:
    func = PIPELINES[name](make_configure(settings))
    ir_path = output_dir / f"{name}.yaml"
    k8s_path = output_dir / f"{name}.k8s.yaml"
    compiler.Compiler().compile(func, str(ir_path))
    _stable_header(ir_path, func.description)
    options = KubernetesManifestOptions(
        pipeline_name=name,
        pipeline_version_name=_version_name(name, settings.tag, ir_path.read_bytes()),
        include_pipeline_manifest=True,
    )
    compiler.Compiler().compile(
        func, str(k8s_path), kubernetes_manifest_options=options, kubernetes_manifest_format=True
    )
    _fix_pipeline_manifest(k8s_path)
    return [ir_path, k8s_path]


def compile_all(
    output_dir: str | Path, settings: ClusterSettings | None = None, manifests_dir: str | Path | None = None
) -> list[Path]:
    """Compile every pipeline in PIPELINES; return the paths written."""
    settings = settings or ClusterSettings()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    written = [p for name in PIPELINES for p in compile_pipeline(name, output_dir, settings)]
    if manifests_dir is not None:
        written += _copy_manifests([p for p in written if p.name.endswith(".k8s.yaml")], Path(manifests_dir))
    return written


def _copy_manifests(k8s_files: list[Path], manifests_dir: Path) -> list[Path]:
    manifests_dir.mkdir(parents=True, exist_ok=True)
    copies = [Path(shutil.copyfile(src, manifests_dir / src.name)) for src in k8s_files]
    kustomization = manifests_dir / "kustomization.yaml"
    kustomization.write_text(
        "# Written by `rlhf compile`; do not edit.\n"
        + yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": sorted(p.name for p in copies),
            },
            sort_keys=False,
        )
    )
    return copies + [kustomization]
