"""The layout holds: one folder per stage with its code and its KFP component, shared code that never
reaches into a stage, kfp only in component specs and pipelines/, rooms whose imports are the arrows
docs/layout.md draws, and one declaration per stage (`components/<stage>/spec.py`) that the stage list, the
run-config sections, the platform defaults, the entry points and the image builds derive from, so that a new
stage is a new folder."""

import ast
import dataclasses
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from kfrlhf.common.spec import StageSpec
from kfrlhf.pipelines.cluster import cli as cli_cluster
from kfrlhf.pipelines.cluster import images
from kfrlhf.pipelines.cluster.platform import DISTRIBUTED_STAGES, ClusterSettings
from kfrlhf.pipelines.definitions.registry import PIPELINES
from kfrlhf.pipelines.definitions.run_config import SECTIONS, RunConfig, section_class
from kfrlhf.pipelines.definitions.stages import MERGE_TASKS, SPECS, STAGES, TASKS

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIRS = {"kfrlhf": ROOT / "components", "kfrlhf.pipelines": ROOT / "pipelines"}


def _modules():
    """(module name, path) of every module of the installed package."""
    for prefix, folder in PACKAGE_DIRS.items():
        for path in sorted(folder.rglob("*.py")):
            rel = path.relative_to(folder).with_suffix("").parts
            if prefix == "kfrlhf" and rel[0] == "pipelines":
                continue
            parts = rel[:-1] if rel[-1] == "__init__" else rel
            yield ".".join((prefix, *parts)), path


def _imports(module: str, path: Path) -> set[str]:
    """Every module `path` imports, relative imports resolved."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found |= {base} | {f"{base}.{a.name}" for a in node.names}
    return found


def _stage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in STAGES else None


MODULES = dict(_modules())


def test_the_modules_are_found():
    assert {"kfrlhf.common.config", "kfrlhf.ppo.trainer", "kfrlhf.pipelines.cli"} <= set(MODULES)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down(module):
    """CLI/pipelines -> stages -> shared code; a stage never imports another stage; kfp only in components."""
    imported = _imports(module, MODULES[module])
    own_stage = _stage(module)
    stages = {_stage(m) for m in imported} - {None}
    if module.startswith("kfrlhf.common") or module == "kfrlhf":
        assert not stages, f"shared code {module} imports the stage(s) {stages}"
    if own_stage:
        assert stages <= {own_stage}, f"{module} imports another stage: {stages - {own_stage}}"
    if not module.startswith("kfrlhf.pipelines"):
        assert not any(m.startswith("kfrlhf.pipelines") for m in imported), f"{module} imports kfrlhf.pipelines"
        uses_kfp = any(m == "kfp" or m.startswith("kfp.") for m in imported)
        assert not uses_kfp or module.endswith(".component"), f"{module} imports kfp but is not a component spec"


def test_every_stage_has_a_folder_with_its_code_and_component():
    folders = {p.parent.name for p in (ROOT / "components").glob("*/component.py")} - {"common"}
    assert folders == set(STAGES)
    for stage in STAGES:
        folder = ROOT / "components" / stage
        code = [p for p in folder.glob("*.py") if p.stem not in ("__init__", "component", "config", "spec")]
        assert code, f"components/{stage}/ has no stage code beside its component"
        doc = ast.get_docstring(ast.parse((folder / "__init__.py").read_text()))
        assert doc, f"components/{stage}/__init__.py has no docstring"


def _resolve(ref: str):
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


def test_one_declaration_per_stage():
    """Every stage declares itself once, in components/<stage>/spec.py; everything else derives from or agrees
    with those declarations."""
    folders = {p.parent.name for p in (ROOT / "components").glob("*/spec.py")} - {"common"}
    assert folders == set(STAGES), "every stage folder, and only those, holds a spec.py"
    dockerfile = (ROOT / images.DOCKERFILE).read_text()
    targets = set(re.findall(r"^FROM \S+ AS (\S+)", dockerfile, re.M))
    sections = {f.name: f for f in dataclasses.fields(RunConfig)}
    resources = ClusterSettings().resources
    for name, spec in SPECS.items():
        assert isinstance(spec, StageSpec) and spec.name == name
        assert importlib.import_module(f"kfrlhf.{name}.spec").SPEC is spec
        # Every entry point exists, by the one convention (`kfrlhf.<stage>.stage:run`), and its component calls it.
        component = (ROOT / "components" / name / "component.py").read_text()
        for entry in spec.entries:
            module, function = entry.split(":")
            assert callable(_resolve(entry)), f"{name}: no {entry}"
            assert f"from {module} import {function}\n" in component, f"{name}: its component does not call {entry}"
        assert spec.image_base in targets, f"images/Dockerfile has no base {spec.image_base} ({name})"
        # Derived: the platform's defaults.
        assert dataclasses.asdict(spec.resources).items() <= dataclasses.asdict(resources[name]).items()
        # The run-config section named after the stage holds its config class (found by convention).
        config = section_class(name)
        if config is None:
            assert name not in sections and not spec.distributed, f"{name}: no config module, so no section"
        else:
            assert sections[name].default_factory is config and config.__module__ == f"kfrlhf.{name}.config"
            has_distributed = any(f.name == "distributed" for f in dataclasses.fields(config))
            assert has_distributed == spec.distributed, f"{name}: distributed must match its config's section"
        if spec.distributed:
            assert "run_stage(run," in component
    assert set(resources) == set(STAGES)
    assert set(SECTIONS) == set(sections) - {"report_to"}
    assert set(DISTRIBUTED_STAGES) == set(cli_cluster.ENTRY_POINTS) == {s for s in STAGES if SPECS[s].distributed}
    assert len(TASKS) == sum(len(spec.tasks) for spec in SPECS.values()) + len(MERGE_TASKS), "a task declared twice"
    assert [spec.order for spec in SPECS.values()] == sorted({spec.order for spec in SPECS.values()}), "orders clash"


# A new stage, whole: what docs/layout.md's "Adding a stage" asks for, in one folder.
TOY_STAGE = {
    "__init__.py": '"""A toy stage: adding a stage touches only its folder."""\n',
    "config.py": (
        "from dataclasses import dataclass\nfrom typing import ClassVar\n\n"
        "from kfrlhf.common.config import StageConfig\n\n\n"
        "@dataclass\nclass ToyConfig(StageConfig):\n"
        '    section: ClassVar[str] = "toy"\n    factor: float = 2.0\n'
    ),
    "stage.py": "def run(toy: dict, output_dir: str) -> dict:\n    return {'factor': toy['factor']}\n",
    "component.py": (
        "from kfp.dsl import Dataset, Output\n\nfrom kfrlhf.common.component import stage_component\n\n\n"
        "@stage_component\ndef toy(toy: dict, out: Output[Dataset]):\n"
        "    from kfrlhf.toy.stage import run\n\n    run(toy, out.path)\n"
    ),
    "spec.py": (
        "from kfrlhf.common.spec import Resources, StageSpec\n\n"
        'SPEC = StageSpec(name="toy", order=55, tasks=(("toy", "Toy"),), resources=Resources("3", gpus=0),\n'
        '                 image_base="light")\n'
    ),
}


def _copy_of_dpo(text: str) -> str:
    """A new method made as a newcomer would: DPO's files with every lower-case `dpo` renamed `tune` (TRL's
    DPOTrainer and DPOConfig stay)."""
    return text.replace("dpo", "tune")


# A short run of the copied method's pipeline (tiny preset).
TUNE_RUN = [
    *("sft.max_steps=4", "sft.eval_steps=4", "reward.max_steps=4", "reward.eval_steps=4"),
    *("tune.max_steps=4", "tune.eval_steps=4", "tune.save_steps=4", "eval.num_prompts=4", "eval.batch_size=4"),
]


def test_adding_a_stage_touches_only_its_folder(tmp_path):
    """A copy of the package with one more stage folder and one more tuning method (a copy of DPO's folder and
    pipeline, renamed, nothing else touched): the stage list, the run config (defaults, presets and --set),
    the platform's resources, the image build and the wheel's packages take the stage in; `rlhf compile`
    (cluster settings, its merge task), `rlhf plan` and `rlhf run --pipeline tune` take the method in."""
    package = tmp_path / "kfrlhf"
    shutil.copytree(ROOT / "components", package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "pipelines", package / "pipelines", ignore=shutil.ignore_patterns("__pycache__", "compiled"))
    (package / "toy").mkdir()
    for name, text in TOY_STAGE.items():
        (package / "toy" / name).write_text(text)
    shutil.copytree(ROOT / "components" / "dpo", package / "tune", ignore=shutil.ignore_patterns("__pycache__"))
    for path in [*(package / "tune").rglob("*.py"), package / "pipelines" / "definitions" / "tune.py"]:
        source = ROOT / "pipelines" / "definitions" / "dpo.py" if path.parent.name == "definitions" else path
        path.write_text(_copy_of_dpo(source.read_text()))
    check = """
import json, sys
from setuptools import find_packages
from kfrlhf.pipelines.cli import GATE_REFUSED, main
from kfrlhf.pipelines.cluster.platform import ClusterSettings
from kfrlhf.pipelines.definitions.registry import PIPELINES
from kfrlhf.pipelines.definitions.run_config import load_config
from kfrlhf.pipelines.definitions.stages import SPECS, STAGES, TASKS
import kfrlhf
package, out = sys.argv[1], sys.argv[2]
assert kfrlhf.__file__.startswith(package), kfrlhf.__file__
assert STAGES.index("toy") == STAGES.index("reward") + 1, STAGES
assert load_config("tiny", overrides=["toy.factor=3"]).toy.factor == 3.0
assert load_config().to_dict()["toy"] == {"factor": 2.0}
assert ClusterSettings().resources["toy"].cpu_request == "3"
assert SPECS["toy"].entries == ("kfrlhf.toy.stage:run",)
assert "toy" in find_packages(package)
assert main(["images", "--dry-run", "--stage", "toy"]) == 0
# The method: its preset, its merge task, compiled for the cluster, planned, run.
tiny = load_config("tiny").to_dict()
assert tiny["tune"] == tiny["dpo"]
assert TASKS["merge_tune"][0] == "merge"
assert main(["compile", "--output", out + "/compiled", "--gpus", "tune=2"]) == 0
assert main(["plan"]) == 0
# A 4-step run: the gate may refuse its model (exit 3), the pipeline must have run.
code = main(["run", "--pipeline", "tune", "--output", out + "/run", "--report-to", "none", *sys.argv[3:]])
assert code in (0, GATE_REFUSED), code
"""
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    args = [str(package), str(tmp_path)] + [a for item in TUNE_RUN for a in ("--set", item)]
    out = subprocess.run([sys.executable, "-c", check, *args], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert "--build-arg=STAGE=toy --build-arg=BASE=light" in out.stdout
    compiled = (tmp_path / "compiled" / "tune.yaml").read_text()
    assert "exec-tune" in compiled and "Merge DPO adapter" in compiled  # its merge task, named by the copied spec
    assert "resourceCount: '2'" in compiled  # --gpus tune=2, the cluster setting, reached its task
    assert re.search(r"^tune +[0-9.]+ +yes", out.stdout, re.M), "rlhf plan has no row for the method"
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["pipeline"] == "tune" and "tune_eval_loss" in (tmp_path / "run" / "logs" / "tune.log").read_text()


def test_every_module_and_data_file_is_in_the_wheel(tmp_path):
    """setuptools ships only the packages setup.py finds: a folder it missed is absent from a wheel (and from
    the images), though an editable install still finds it. Built here, as the images build it."""
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path)]
    subprocess.run([*build, str(ROOT)], check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    for prefix, root in PACKAGE_DIRS.items():
        for path in root.rglob("*"):
            if path.suffix in (".py", ".yaml") and "__pycache__" not in path.parts and "compiled" not in path.parts:
                name = "/".join((*prefix.split("."), *path.relative_to(root).parts))
                assert name in shipped, f"{path.relative_to(ROOT)} is not in the wheel"


# The rooms: folders whose __init__ docstring says what they hold and who may import them.
ROOMS = ("components/common/", "components/launch/", "pipelines/definitions/", "pipelines/cluster/", "pipelines/local/")


def _room(module: str) -> str | None:
    """The room of a module as docs/layout.md names it: its folder, `components/<stage>/` for a stage's, or
    pipelines/cli.py; None for the package's own __init__ files (the version and docstrings)."""
    path = MODULES[module].relative_to(ROOT)
    if path.parent == Path("components") or path.parent == Path("pipelines") and path.name == "__init__.py":
        return None
    if path.parent == Path("pipelines"):
        return path.as_posix()
    top, folder = path.parts[:2]
    return f"{top}/<stage>/" if _stage(module) else f"{top}/{folder}/"


def _owner(name: str) -> str | None:
    """The module an imported name lives in (the longest module of the package it starts with), or None."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in MODULES:
            return ".".join(parts[:n])
    return None


def _import_graph() -> set[tuple[str, str]]:
    arrows = set()
    for module, path in MODULES.items():
        for name in _imports(module, path):
            target = _owner(name)
            source, dest = _room(module), target and _room(target)
            if source and dest and source != dest:
                arrows.add((source, dest))
    return arrows


def _documented_arrows() -> set[tuple[str, str]]:
    page = (ROOT / "docs" / "layout.md").read_text()
    section = page.split("## Rooms and arrows", 1)[1]
    block = section.split("```", 2)[1]
    return {tuple(line.split(" -> ")) for line in block.strip().splitlines()}


def test_the_layout_page_draws_the_import_graph():
    """docs/layout.md's arrows are the import graph between rooms: none missing, none that is not there."""
    drawn, actual = _documented_arrows(), _import_graph()
    assert drawn, "docs/layout.md has no arrows under ## Rooms and arrows"
    assert not actual - drawn, f"imports that docs/layout.md does not draw: {sorted(actual - drawn)}"
    assert not drawn - actual, f"arrows in docs/layout.md that no import makes: {sorted(drawn - actual)}"


def test_the_arrows_point_down():
    """No cycle, and common/ imports no other room (the launch room included)."""
    arrows = _import_graph()
    assert not {(a, b) for a, b in arrows if (b, a) in arrows}, "two rooms import each other"
    assert not {b for a, b in arrows if a == "components/common/"}, "components/common/ imports another room"


def test_common_never_imports_the_launch_room():
    for module, path in MODULES.items():
        if module.startswith("kfrlhf.common"):
            launch = {m for m in _imports(module, path) if m == "kfrlhf.launch" or m.startswith("kfrlhf.launch.")}
            assert not launch, f"{module} imports the launch room: {sorted(launch)}"


@pytest.mark.parametrize("room", ROOMS)
def test_every_room_says_what_it_holds_and_who_may_import_it(room):
    init = ROOT / room / "__init__.py"
    doc = ast.get_docstring(ast.parse(init.read_text())) if init.exists() else None
    assert doc, f"{room} has no __init__.py docstring"
    assert "import" in doc, f"{room}__init__.py does not say who may import it"
    modules = [p.stem for p in (ROOT / room).glob("*.py") if p.stem != "__init__"]
    unnamed = [m for m in modules if m not in doc and m not in PIPELINES]  # pipelines: `<name>.py`, found
    assert not unnamed, f"{room}__init__.py does not name its module(s) {sorted(unnamed)}"


def test_every_folder_is_a_stage_or_a_room():
    folders = {
        f"{p.parent.parent.name}/{p.parent.name}/" for top in PACKAGE_DIRS.values() for p in top.glob("*/__init__.py")
    }
    assert folders == set(ROOMS) | {f"components/{stage}/" for stage in STAGES}
