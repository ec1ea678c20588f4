"""The wheel's packages, found rather than listed, so a new stage's folder ships without an edit here: every folder
under components/ (`kfrlhf.*`) and pipelines/ (`kfrlhf.pipelines.*`) with an `__init__.py`, and every folder of
YAML only (a stage's presets/, launch/accelerate_configs/, pipelines/presets/ and configs/) as a data package,
which is how setuptools wants data in a subfolder declared. pipelines/compiled/ is `rlhf compile`'s output for a
cluster, not read by the package. Everything else is in pyproject.toml."""

import warnings
from pathlib import Path

from setuptools import find_packages, setup

# The editable install maps `kfrlhf` onto components/ with a finder; setuptools then says that a folder named like
# the package in the working directory would win over it. There is none (the package is `kfrlhf`, the folders are
# components/ and pipelines/), so that notice says nothing about this project.
warnings.filterwarnings("ignore", message="Editable installation")


def packages(root: str, prefix: str) -> list[str]:
    code = find_packages(root)
    data = [
        ".".join(folder.relative_to(root).parts)
        for folder in sorted(Path(root).rglob("*"))
        if folder.is_dir()
        and folder.name != "compiled"
        and not (folder / "__init__.py").exists()
        and any(folder.glob("*.yaml"))
    ]
    return [prefix, *(f"{prefix}.{name}" for name in code + data)]


setup(packages=[*packages("components", "kfrlhf"), *packages("pipelines", "kfrlhf.pipelines")])
