"""The requirements of the project and some of its extras, read from pyproject.toml, one per line: what an image's
dependency layer installs before the project's own code is copied in (`images/Dockerfile`), so that a change to
the code leaves that layer cached. Runs on the image's Python (3.11: tomllib) with nothing installed.

    python3 requirements.py pyproject.toml [EXTRA,EXTRA...]   # the project's requirements (and those extras')
    python3 requirements.py pyproject.toml --build           # its build system's (setuptools)
"""

import sys

import tomllib


def requirements(pyproject: str, extras: str) -> list[str]:
    with open(pyproject, "rb") as f:
        toml = tomllib.load(f)
    if extras == "--build":
        return list(toml["build-system"]["requires"])
    project = toml["project"]
    optional = project.get("optional-dependencies", {})
    names = [e for e in extras.split(",") if e]
    unknown = [e for e in names if e not in optional]
    if unknown:
        raise SystemExit(f"{pyproject}: no extra {', '.join(unknown)} (extras: {', '.join(optional)})")
    return list(project["dependencies"]) + [r for e in names for r in optional[e]]


if __name__ == "__main__":
    print("\n".join(requirements(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "")))
