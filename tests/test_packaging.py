"""A quiet build: setuptools has no warning about the project's own packaging (the licence as an SPDX expression,
data folders declared as packages), for the wheel the images install and for the editable install `make install`
makes. Built from the files the images copy (images/Dockerfile, stage `src`), so no leftover egg-info helps."""

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def image_sources() -> list[str]:
    """What the Dockerfile's `src` stage copies (`COPY a b c /src/...` lines up to the next FROM)."""
    stage = (ROOT / "images" / "Dockerfile").read_text().split("FROM scratch AS src\n", 1)[1].split("\nFROM ", 1)[0]
    return [name for line in stage.splitlines() if line.startswith("COPY ") for name in line.split()[1:-1]]


WARNING = re.compile(r"\S+\.py:\d+: \w+: ")
BUILD = """
import sys
from setuptools import build_meta
build_meta.build_wheel(sys.argv[1])
build_meta.build_editable(sys.argv[1])
"""


def test_the_build_is_quiet_and_ships_the_licence_and_every_data_file(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in image_sources():
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(ROOT / name, src / name)
    out = subprocess.run(
        [sys.executable, "-W", "always", "-c", BUILD, str(tmp_path / "dist")],
        cwd=src,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    # Python warnings print as "file.py:line: Category: message" (setuptools' notices too: InformationOnly);
    # its log lines ("warning: build_py: byte-compiling is disabled") are not about the project's packaging.
    warnings = [line for line in out.stderr.splitlines() if WARNING.match(line)]
    assert not warnings, "\n".join(warnings)
    (wheel,) = [zipfile.ZipFile(p) for p in (tmp_path / "dist").glob("*.whl") if "editable" not in p.name]
    names = set(wheel.namelist())
    assert "kubeflow_rlhf-0.1.0.dist-info/licenses/LICENSE" in names
    assert "License-Expression: Apache-2.0" in wheel.read("kubeflow_rlhf-0.1.0.dist-info/METADATA").decode()
    for prefix, root in {"kfrlhf": ROOT / "components", "kfrlhf/pipelines": ROOT / "pipelines"}.items():
        data = [p.relative_to(root).as_posix() for p in root.rglob("*.yaml") if "compiled" not in p.parts]
        missing = [name for name in data if f"{prefix}/{name}" not in names]
        assert data and not missing, f"not in the wheel: {missing}"
