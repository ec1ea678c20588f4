"""Fill a folder with the wheels of images/gpu-wheels.txt for an offline GPU image (CPython 3.12, manylinux x86_64),
plus the project's own wheel (rebuilt on every call). Usage: python3 images/gpu_wheels.py LIST DIR

kfp-server-api is published as an sdist only: its wheel is built once. bitsandbytes is repacked keeping only the
CUDA 13.0 and CPU libraries, RECORD rewritten to match. Wheels not on the list are removed: two versions of one
package stop `pip install --no-deps`.
"""

import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PLATFORMS = [f"manylinux_2_{n}_x86_64" for n in range(39, 16, -1)] + ["manylinux2014_x86_64", "manylinux1_x86_64"]
TARGET = ["--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp"]
TARGET += [a for p in PLATFORMS for a in ("--platform", p)]
BNB_KEEP = ("libbitsandbytes_cuda130.so", "libbitsandbytes_cpu.so")


def pip(*args) -> None:
    subprocess.run([sys.executable, "-m", "pip", "-q", *map(str, args)], check=True)


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def trim_bitsandbytes(src: Path, dst: Path) -> None:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        drop = {n for n in zin.namelist() if "/libbitsandbytes_" in n and not n.endswith(BNB_KEEP)}
        for info in zin.infolist():
            if info.filename in drop:
                continue
            data = zin.read(info)
            if info.filename.endswith(".dist-info/RECORD"):
                lines = data.decode().splitlines(keepends=True)
                data = "".join(line for line in lines if line.split(",")[0] not in drop).encode()
            zout.writestr(info, data)


def main(listfile: str, folder: str) -> None:
    out = Path(folder)
    out.mkdir(exist_ok=True)
    lines = [line.split("#")[0].strip() for line in Path(listfile).read_text().splitlines()]
    pins = dict(line.split("==") for line in lines if line)
    want = {norm(name): version for name, version in pins.items()}
    for wheel in out.glob("*.whl"):
        name, version = wheel.name.split("-")[:2]
        if want.get(norm(name)) != version:
            wheel.unlink()
    have = {norm(wheel.name.split("-")[0]) for wheel in out.glob("*.whl")}
    todo = [f"{name}=={version}" for name, version in pins.items() if norm(name) not in have]
    special = {"kfp_server_api", "bitsandbytes"}
    plain = [spec for spec in todo if norm(spec.split("==")[0]) not in special]
    if plain:
        pip("download", "--no-deps", *TARGET, "-d", out, *plain)
    for spec in todo:
        if norm(spec.split("==")[0]) == "kfp_server_api":
            pip("wheel", "--no-deps", "-w", out, spec)
        elif norm(spec.split("==")[0]) == "bitsandbytes":
            with tempfile.TemporaryDirectory() as tmp:
                pip("download", "--no-deps", *TARGET, "-d", tmp, spec)
                wheel = next(Path(tmp).glob("*.whl"))
                trim_bitsandbytes(wheel, out / wheel.name)
    with tempfile.TemporaryDirectory() as tmp:  # a copy: no build/ in the tree whose stale files would ship
        for name in ("pyproject.toml", "README.md", "components", "pipelines"):
            src, dst = ROOT / name, Path(tmp) / name
            if src.is_dir():
                shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy(src, dst)
        pip("wheel", "--no-deps", "-w", out, tmp)
    names = sorted(norm(wheel.name.split("-")[0]) for wheel in out.glob("*.whl"))
    twice = {name for name in names if names.count(name) > 1}
    missing = set(want) - set(names)
    if twice or missing:
        sys.exit(f"{out}: two versions of {sorted(twice)}; missing {sorted(missing)}")


if __name__ == "__main__":
    main(*sys.argv[1:])
