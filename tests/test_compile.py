"""`rlhf compile`: every stage its own GPU executor with the cluster settings, loadable, no drift."""

from __future__ import annotations

import argparse
import ast
import filecmp
import re
from pathlib import Path

import pytest
import yaml
from google.protobuf import json_format
from kfp import components
from kfp.pipeline_spec import pipeline_spec_pb2

from kfrlhf.common.outputs import OutputRefused
from kfrlhf.pipelines.cluster import cli as cli_cluster
from kfrlhf.pipelines.cluster.compile import PIPELINES, compile_all, overlays_to_name
from kfrlhf.pipelines.cluster.images import image_for
from kfrlhf.pipelines.cluster.platform import DISPLAY_NAMES, ClusterSettings
from kfrlhf.pipelines.definitions.stages import METHODS
from tests.conftest import KUBECTL, need

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "pipelines" / "compiled"
COMMITTED_MANIFESTS = ROOT / "manifests" / "base" / "pipelines"
REGENERATE = "rlhf compile --output pipelines/compiled --manifests manifests/base/pipelines"
# Pipeline -> the stages that run on a GPU, each with an image of its own.
# PPO's pipelines are rlhf and rlaif; every other is named after its tuning method's stage.
GPU_STAGES = {
    **{name: ("sft", "reward", name if name in METHODS else "ppo", "eval") for name in PIPELINES},
    "rlaif": ("sft", "rlaif", "reward", "ppo", "eval"),
}


@pytest.fixture(scope="module")
def fresh(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("compiled")
    compile_all(out / "compiled", ClusterSettings(), out / "manifests")
    return out


def _load(path: Path) -> tuple[dict, dict]:
    ir, platform = yaml.safe_load_all(path.read_text())
    return ir, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def _executors_by_image(ir: dict) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, spec in ir["deploymentSpec"]["executors"].items():
        out.setdefault(spec["container"]["image"], []).append(name)
    return out


def test_every_pipeline_compiles_to_ir_and_manifests(fresh):
    assert set(PIPELINES) == set(GPU_STAGES)
    for name in PIPELINES:
        assert (fresh / "compiled" / f"{name}.yaml").is_file()
        assert (fresh / "compiled" / f"{name}.k8s.yaml").is_file()
        assert filecmp.cmp(fresh / "compiled" / f"{name}.k8s.yaml", fresh / "manifests" / f"{name}.k8s.yaml")


@pytest.mark.parametrize("pipeline", GPU_STAGES)
def test_training_stages_are_separate_gpu_executors(fresh, pipeline):
    ir, _ = _load(fresh / "compiled" / f"{pipeline}.yaml")
    executors = ir["deploymentSpec"]["executors"]
    by_image = _executors_by_image(ir)
    seen: set[str] = set()
    for stage in GPU_STAGES[pipeline]:
        names = by_image.get(image_for(stage), [])
        assert names, f"no executor runs {image_for(stage)}"
        assert not seen & set(names)
        seen |= set(names)
        for name in names:
            acc = executors[name]["container"]["resources"]["accelerator"]
            assert acc["resourceType"] == "nvidia.com/gpu" and int(acc["resourceCount"]) >= 1, name
    assert len(by_image[image_for("merge")]) == 2  # merge_sft and merge_ppo / merge_dpo / ...
    # No pod holds a GPU it does not use: data prep, and merge (fp32 on the CPU).
    for name in by_image[image_for("data")] + by_image[image_for("merge")]:
        assert "accelerator" not in executors[name]["container"]["resources"], name


def _assert_rest_chain(ir: dict, n: int) -> None:
    """n Grow/Improve pairs: Grow i samples with Improve i-1's adapter, Improve i trains on Grow i's samples
    from that adapter, and the last adapter is merged."""
    tasks = ir["root"]["dag"]["tasks"]
    names = [(f"rest-grow{s}", f"rest-improve{s}") for s in ["", *(f"-{i}" for i in range(2, n + 1))]]
    assert sorted(t for t in tasks if t.startswith("rest-")) == sorted(t for pair in names for t in pair)
    for i, (grow, improve) in enumerate(names):
        params = tasks[grow]["inputs"]["parameters"]
        assert {k: params[k]["runtimeValue"]["constant"] for k in ("iteration", "iterations")} == {
            "iteration": i,
            "iterations": n,
        }
        assert tasks[grow]["taskInfo"]["name"] == f"{DISPLAY_NAMES['rest_grow']} {i + 1}/{n}"
        artifacts = {t: tasks[t]["inputs"]["artifacts"] for t in (grow, improve)}
        assert artifacts[improve]["samples"]["taskOutputArtifact"]["producerTask"] == grow
        adapters = [artifacts[grow].get("adapter"), artifacts[improve].get("previous_adapter")]
        if i == 0:
            assert adapters == [None, None]
        else:
            assert [a["taskOutputArtifact"]["producerTask"] for a in adapters] == [names[i - 1][1]] * 2
    assert tasks["merge-onto"]["inputs"]["artifacts"]["adapter"]["taskOutputArtifact"]["producerTask"] == names[-1][1]


def test_rest_unrolls_its_iterations_into_a_chain(fresh, tmp_path):
    from kfrlhf.pipelines.definitions.run_config import RunConfig, load_config

    _assert_rest_chain(_load(fresh / "compiled" / "rest.yaml")[0], RunConfig().rest.iterations)
    compile_all(tmp_path, ClusterSettings(), config=load_config(overrides=["rest.iterations=2"]))
    _assert_rest_chain(_load(tmp_path / "rest.yaml")[0], 2)


def test_eval_outputs_show_in_the_ui(fresh):
    ir, _ = _load(fresh / "compiled" / "rlhf.yaml")
    (eval_exec,) = _executors_by_image(ir)[image_for("eval")]
    (component,) = [c for c in ir["components"].values() if c.get("executorLabel") == eval_exec]
    kinds = {a["artifactType"]["schemaTitle"] for a in component["outputDefinitions"]["artifacts"].values()}
    assert "system.Metrics" in kinds and kinds & {"system.Markdown", "system.HTML"}


@pytest.mark.parametrize("pipeline", GPU_STAGES)
def test_eval_gate_guards_promotion(fresh, pipeline):
    """eval -> gate; promote only under dsl.If(gate == "passed"), on the GPU pool; the gated report is returned."""
    ir, k8s = _load(fresh / "compiled" / f"{pipeline}.yaml")
    tasks = ir["root"]["dag"]["tasks"]
    assert tasks["gate"]["inputs"]["artifacts"]["eval_report"]["taskOutputArtifact"]["producerTask"] == "evaluate"
    (condition,) = [t for t in tasks.values() if "triggerPolicy" in t]
    assert (
        condition["triggerPolicy"]["condition"] == "inputs.parameter_values['pipelinechannel--gate-Output'] == 'passed'"
    )
    assert (
        condition["inputs"]["parameters"]["pipelinechannel--gate-Output"]["taskOutputParameter"]["producerTask"]
        == "gate"
    )
    promote = ir["components"][condition["componentRef"]["name"]]["dag"]["tasks"]["promote"]
    pool = promote["inputs"]["parameters"]["node_pool"]["runtimeValue"]["constant"]
    s = ClusterSettings()
    assert pool == {"node_selector": s.node_selector, "tolerations": s.tolerations}
    assert promote["inputs"]["parameters"]["run_id"]["runtimeValue"]["constant"] == "{{$.pipeline_job_uuid}}"
    assert ir["root"]["dag"]["outputs"]["artifacts"]["Output"]["artifactSelectors"][0]["producerSubtask"] == "gate"
    for executor, image in (("exec-gate", image_for("gate")), ("exec-promote", image_for("serve"))):
        container = ir["deploymentSpec"]["executors"][executor]["container"]
        assert container["image"] == image and "accelerator" not in container["resources"], executor
        assert "nodeSelector" not in k8s[executor], executor


@pytest.mark.parametrize("pipeline", GPU_STAGES)
def test_platform_spec_carries_node_pool_secrets_and_cache(fresh, pipeline):
    s = ClusterSettings()
    ir, k8s = _load(fresh / "compiled" / f"{pipeline}.yaml")
    for stage in GPU_STAGES[pipeline]:
        for name in _executors_by_image(ir)[image_for(stage)]:
            cfg = k8s[name]
            assert cfg["nodeSelector"]["labels"] == s.node_selector
            assert cfg["tolerations"] == s.tolerations
            envs = {m["envVar"] for sec in cfg["secretAsEnv"] for m in sec["keyToEnv"]}
            assert envs == {"HF_TOKEN", "WANDB_API_KEY"}
            assert cfg["pvcMount"] == [
                {
                    "constant": s.cache_pvc,
                    "mountPath": s.cache_mount_path,
                    "pvcNameParameter": {"runtimeValue": {"constant": s.cache_pvc}},
                }
            ]
            assert cfg["securityContext"]["runAsNonRoot"] is True


@pytest.mark.parametrize("pipeline", GPU_STAGES)
def test_tasks_retry_with_backoff_and_cache(fresh, pipeline):
    ir, _ = _load(fresh / "compiled" / f"{pipeline}.yaml")
    dags = [ir["root"]] + [c for c in ir["components"].values() if "dag" in c]
    tasks = {n: t for dag in dags for n, t in dag["dag"]["tasks"].items()}
    container_tasks = {n: t for n, t in tasks.items() if "executorLabel" in ir["components"][t["componentRef"]["name"]]}
    assert container_tasks
    for name, task in container_tasks.items():
        assert task["retryPolicy"]["maxRetryCount"] == 2, name
        assert task["retryPolicy"]["backoffFactor"] == 2.0
        assert task.get("cachingOptions", {}).get("enableCache", False) is (name != "promote"), name  # side effects
        # ReST's unrolled tasks carry their round: "ReST Grow (sample, score) 2/3".
        assert re.sub(r" \d+/\d+$", "", task["taskInfo"]["name"]) in DISPLAY_NAMES.values(), name


def test_kfp_loads_every_compiled_file(fresh):
    for name in PIPELINES:
        component = components.load_component_from_file(str(fresh / "compiled" / f"{name}.yaml"))
        assert component.name == name
        docs = list(yaml.safe_load_all((fresh / "compiled" / f"{name}.k8s.yaml").read_text()))
        (version,) = [d for d in docs if d["kind"] == "PipelineVersion"]
        json_format.ParseDict(version["spec"]["pipelineSpec"], pipeline_spec_pb2.PipelineSpec())
        json_format.ParseDict(version["spec"]["platformSpec"], pipeline_spec_pb2.PlatformSpec())
        assert version["spec"]["pipelineName"] == name


def test_cli_overrides_registry_tag_and_gpus(tmp_path):
    parser = argparse.ArgumentParser(prog="rlhf")
    cli_cluster.add_compile_parser(parser.add_subparsers(required=True))
    args = parser.parse_args(
        ["compile", "--output", str(tmp_path), "--registry", "registry.example/ml", "--tag", "v9", "--gpus", "ppo=2"]
    )
    assert args.func(args) == 0
    ir, _ = _load(tmp_path / "rlhf.yaml")
    executors = ir["deploymentSpec"]["executors"]
    (ppo,) = _executors_by_image(ir)[image_for("ppo", "registry.example/ml", "v9")]
    assert executors[ppo]["container"]["resources"]["accelerator"]["resourceCount"] == "2"


@pytest.mark.parametrize("pipeline", sorted(PIPELINES))
def test_a_pipeline_module_holds_its_pipeline_only(pipeline):
    """The head and tail the pipelines share live in pipelines/definitions/blocks.py: a pipeline's module defines
    its builder (the explicit @dsl.pipeline signature and a few block calls) and nothing else."""
    tree = ast.parse((ROOT / "pipelines" / "definitions" / f"{pipeline}.py").read_text())
    defined = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
    assert defined == [f"build_{pipeline}_pipeline"], f"pipelines/definitions/{pipeline}.py defines {defined}"
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not {f"kfrlhf.pipelines.{other}" for other in PIPELINES} & imported, "import shared blocks from blocks.py"


def test_committed_files_match_a_fresh_compile(fresh):
    for committed, new in ((COMMITTED, fresh / "compiled"), (COMMITTED_MANIFESTS, fresh / "manifests")):
        names = sorted(p.name for p in new.iterdir())
        assert sorted(p.name for p in committed.iterdir()) == names, (  # the .rlhf-output marker too
            f"stale files in {committed}; run {REGENERATE}"
        )
        for n in names:
            assert (committed / n).read_text() == (new / n).read_text(), f"{committed / n} is stale; run {REGENERATE}"


def test_compile_retargets_the_cache_init_hook_image(tmp_path):
    """The base's cache-init Job pulls the data image the pipelines were compiled for."""
    import shutil
    import subprocess

    need("kubectl", KUBECTL)
    shutil.copytree(ROOT / "manifests" / "base", tmp_path / "base")
    digest = "sha256:" + "ab" * 32
    settings = ClusterSettings(registry="mirror.example/ml", tag="v9", digests={"data": digest})
    compile_all(tmp_path / "compiled", settings, tmp_path / "base" / "pipelines")
    out = subprocess.run(["kubectl", "kustomize", str(tmp_path / "base")], capture_output=True, text=True, check=True)
    objects = list(yaml.safe_load_all(out.stdout))
    (job,) = [o for o in objects if o["kind"] == "Job"]
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"mirror.example/ml/kubeflow-rlhf-data@{digest}"
    assert container["imagePullPolicy"] == "IfNotPresent"
    rlhf = next(o for o in objects if o["kind"] == "PipelineVersion" and o["spec"]["pipelineName"] == "rlhf")
    executors = rlhf["spec"]["pipelineSpec"]["deploymentSpec"]["executors"]
    assert executors["exec-prepare-data"]["container"]["image"] == container["image"]  # the same image


def test_overlays_never_overwrite_a_version_names_folder_they_did_not_write(tmp_path):
    """`--overlays` rewrites only the version-names component it wrote (its header line): a hand-written one,
    or anything else in that folder, is refused before any file is written."""
    overlays = tmp_path / "overlays"
    (overlays / "other").mkdir(parents=True)  # no version-names component: left alone
    (overlays / "other" / "kustomization.yaml").write_text("resources: []\n")
    mine = overlays / "mine" / "version-names"
    mine.mkdir(parents=True)
    (overlays / "mine" / "kustomization.yaml").write_text("components: [version-names]\n")
    hand = mine / "kustomization.yaml"
    hand.write_text("kind: Component  # my own patches\n")
    with pytest.raises(OutputRefused, match="not written by rlhf compile"):
        compile_all(tmp_path / "out", overlays_dir=overlays)
    assert hand.read_text() == "kind: Component  # my own patches\n" and not (tmp_path / "out").exists()
    hand.unlink()
    (mine / "notes.txt").write_text("mine\n")
    with pytest.raises(OutputRefused, match="notes.txt"):
        overlays_to_name(overlays)
    (mine / "notes.txt").unlink()
    assert overlays_to_name(overlays) == [overlays / "mine"]  # an empty folder is compile's to fill
    with pytest.raises(OutputRefused, match="not a directory"):
        overlays_to_name(tmp_path / "missing")
    # The committed overlay that names its versions passes the check: it holds only what compile wrote.
    assert overlays_to_name(ROOT / "manifests" / "overlays") == [ROOT / "manifests" / "overlays" / "gpu-cluster"]
