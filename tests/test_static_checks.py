"""Static security checks: checkov on the rendered kustomize overlays and images/Dockerfile,
bandit on the Python code. Zero findings beyond ALLOWED, each entry with its reason
(docs/security.md, "Accepted findings", carries the same list).
"""

import fnmatch
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import KUBECTL, need

ROOT = Path(__file__).resolve().parents[1]

# (check id, path pattern relative to the repository): why the finding stands.
ALLOWED = {
    ("B311", "components/*"): "`random` seeds data splits, sampling and the generated sample data; no security use",
    (
        "B105",
        "pipelines/cluster/platform.py",
    ): "'HF_TOKEN' is the name of the env var a Secret is mapped to, not a value",
    ("B105", "pipelines/cluster/submit.py"): "'KFP_TOKEN' and the projected token path are names, not values",
    ("B106", "components/common/models.py"): "tokenizer special tokens ('<pad>'), not passwords",
    ("B106", "benchmarks/*.py"): "tokenizer special tokens ('<pad>', 'eos'), not passwords",
    ("B311", "benchmarks/*.py"): "`random` seeds the benchmark's synthetic data",
    ("B615", "benchmarks/*.py"): "the benchmark loads the models it wrote to its own temporary directory",
    ("B404", "benchmarks/ppo_vs_trl.py"): "the benchmark runs its own child processes",
    ("B603", "benchmarks/ppo_vs_trl.py"): "fixed argv (the TRL venv's python and the benchmark's script), no shell",
    ("B108", "components/launch/trainjob.py"): "'/dev/shm' is where a memory-backed volume mounts (NCCL), no temp file",
    ("B108", "pipelines/cluster/platform.py"): "'/dev/shm' is where a memory-backed volume mounts (NCCL), no temp file",
    ("B404", "benchmarks/gpu_check.py"): "the GPU check runs the pipelines, generate and pytest as child processes",
    ("B603", "benchmarks/gpu_check.py"): "fixed argv (this python: -m kfrlhf.pipelines.cli, -m pytest), no shell",
    ("B615", "components/*"): "hub names are user config (default branch); pin by naming a local snapshot; "
    "the other calls load local artifacts; safetensors only, no remote code",
    (
        "B506",
        "components/common/config.py",
    ): "yaml.load with StrictLoader, a SafeLoader subclass (no aliases, no repeated keys)",
    ("B506", "components/rlaif/constitution.py"): "the constitution is read with the same StrictLoader",
    ("B404", "components/launch/launcher.py"): "a training stage starts `accelerate launch` across the pod's GPUs",
    ("B603", "components/launch/launcher.py"): "fixed argv (accelerate launch, the stage's entry point), no shell",
    ("B404", "components/common/rollout/vllm_engine.py"): "the vllm engine starts its worker in vLLM's own venv",
    (
        "B603",
        "components/common/rollout/vllm_engine.py",
    ): "fixed argv (vLLM's venv python -P, our worker file), no shell",
    (
        "B108",
        "components/common/rollout/vllm_engine.py",
    ): "a private TemporaryDirectory (mode 0700) on memory-backed /dev/shm for the weights handed to the worker",
    ("B404", "pipelines/local/console.py"): "rlhf run starts kfp.local's task commands itself, to capture their output",
    ("B603", "pipelines/local/console.py"): "the argv is kfp.local's own task command, no shell of ours",
    ("B404", "pipelines/cluster/compile.py"): "`rlhf compile --overlays` renders the overlays with kubectl",
    ("B603", "pipelines/cluster/compile.py"): "fixed argv (kubectl kustomize DIR), no shell",
    ("B607", "pipelines/cluster/compile.py"): "kubectl is looked up on PATH, as a user runs it",
    ("CKV_K8S_40", "*overlay-*.yaml"): "the cache-init Job runs as uid/gid 1000, the images' user, whose group "
    "must own the PVC",
    ("CKV_K8S_43", "*overlay-*.yaml"): "the cache-init Job names the data image by tag like the compiled pipelines; "
    "pin the digest with the overlay's `images:` (.github/workflows/images.yaml)",
    ("CKV_K8S_15", "*overlay-*.yaml"): "the cache-init hook pulls IfNotPresent: with Always an unreachable registry "
    "blocks every Argo CD sync; its image is retargeted with the compiled one (compile --tag/--digest)",
    ("CKV_DOCKER_7", "images/Dockerfile"): "base images come from ARGs whose defaults are exact tags "
    "(nvidia/cuda:12.8.1-base-ubuntu24.04, python:3.11-slim-bookworm)",
}


def unexplained(findings: list[tuple[str, str, str]]) -> list[str]:
    """`(check id, path, detail)` findings that no ALLOWED entry covers."""
    return [
        f"{cid} {path}: {detail}"
        for cid, path, detail in findings
        if not any(cid == a_id and fnmatch.fnmatch(path, pattern) for a_id, pattern in ALLOWED)
    ]


def _tool(name: str) -> str:
    for candidate in (Path(sys.executable).with_name(name), ROOT / ".venv-tools" / "bin" / name):
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if not found:
        pytest.skip(f"{name} is not installed (pip install '.[test]')")
    return found


def test_bandit():
    out = subprocess.run(
        [_tool("bandit"), "-r", "components", "pipelines", "benchmarks", "-q", "-f", "json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = json.loads(out.stdout)
    assert not report["errors"], report["errors"]
    findings = [(r["test_id"], r["filename"], f"line {r['line_number']}: {r['issue_text']}") for r in report["results"]]
    assert not unexplained(findings), "\n".join(unexplained(findings))


def test_checkov(tmp_path):
    kubectl = need("kubectl", KUBECTL)
    files = []
    for overlay in sorted((ROOT / "manifests" / "overlays").iterdir()):
        rendered = tmp_path / f"overlay-{overlay.name}.yaml"
        rendered.write_text(
            subprocess.run(
                [kubectl, "kustomize", str(overlay)], capture_output=True, text=True, timeout=120, check=True
            ).stdout
        )
        files += ["-f", str(rendered)]
    files += ["-f", "images/Dockerfile"]
    out = subprocess.run(
        [
            _tool("checkov"),
            *files,
            "--framework",
            "kubernetes",
            "dockerfile",
            "--skip-download",
            "--quiet",
            "--compact",
            "-o",
            "json",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    reports = json.loads(out.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    assert {r["check_type"] for r in reports} == {"kubernetes", "dockerfile"}, out.stdout[:500]
    findings = [
        (f["check_id"], f["repo_file_path"].lstrip("/"), f"{f['resource']}: {f['check_name']}")
        for r in reports
        for f in r["results"]["failed_checks"]
    ]
    assert not unexplained(findings), "\n".join(unexplained(findings))


def test_docs_list_every_accepted_finding():
    """docs/security.md's "Accepted findings" table carries ALLOWED: a row per check id naming the path."""
    text = (ROOT / "docs" / "security.md").read_text().split("## Accepted findings", 1)[1]
    rows = [line.split("|")[1:3] for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    missing = [
        f"{cid} {pattern}"
        for cid, pattern in ALLOWED
        if not any(cid in check and pattern.split("*")[0] in where for check, where in rows)
    ]
    assert not missing, f"docs/security.md, Accepted findings, lacks: {missing}"
