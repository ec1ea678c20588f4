"""The layout holds: one folder per stage with its code and its KFP component, shared code that never
reaches into a stage, kfp only in component specs and pipelines/, and one stage list that the
component folders, the Dockerfile, the images, the platform defaults and the build loop of
docs/cluster.md agree with."""

import ast
import re
from pathlib import Path

import pytest

from kfrlhf.pipelines.cluster import images
from kfrlhf.pipelines.cluster.platform import ClusterSettings
from kfrlhf.pipelines.definitions.stages import STAGES, TASKS

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
        code = [p for p in folder.glob("*.py") if p.stem not in ("__init__", "component", "config")]
        assert code, f"components/{stage}/ has no stage code beside its component"
        doc = ast.get_docstring(ast.parse((folder / "__init__.py").read_text()))
        assert doc, f"components/{stage}/__init__.py has no docstring"


def test_one_stage_list():
    dockerfile = (ROOT / images.DOCKERFILE).read_text()
    targets = set(re.findall(r"^FROM \S+ AS (\S+)", dockerfile, re.M))
    assert set(STAGES) <= targets, f"Dockerfile targets missing: {set(STAGES) - targets}"
    assert set(ClusterSettings().resources) == set(STAGES)
    assert {stage for stage, _ in TASKS.values()} == set(STAGES)
    for doc in ("docs/cluster.md", "images/README.md"):
        loop = re.search(r"for target in ([\w ]+); do", (ROOT / doc).read_text())
        assert loop and loop.group(1).split() == list(STAGES), f"{doc}: the image build loop must build {STAGES}"


def test_every_package_folder_is_in_the_wheel():
    """setuptools installs only the packages pyproject lists: a stage folder left out is missing from a wheel
    (and from the images), though an editable install still finds it."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {
        ".".join((name, *p.parent.relative_to(root).parts)).removesuffix(".")
        for name, root in PACKAGE_DIRS.items()
        for p in root.rglob("__init__.py")
        if "__pycache__" not in p.parts
    }
    assert found <= listed, f"missing from pyproject's packages: {sorted(found - listed)}"

