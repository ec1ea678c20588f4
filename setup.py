"""The wheel's packages, found rather than listed: every folder with an `__init__.py` under components/
(`kfrlhf.*`) and pipelines/ (`kfrlhf.pipelines.*`), so a new stage's folder ships without an edit here.
presets/ and configs/ hold YAML only (data packages). Everything else is in pyproject.toml."""

from setuptools import find_packages, setup

setup(
    packages=[
        "kfrlhf",
        *(f"kfrlhf.{name}" for name in find_packages("components")),
        "kfrlhf.pipelines",
        *(f"kfrlhf.pipelines.{name}" for name in find_packages("pipelines")),
        "kfrlhf.pipelines.presets",
        "kfrlhf.pipelines.configs",
    ]
)
