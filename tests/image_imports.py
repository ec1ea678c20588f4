"""Run inside a stage image (`python3 - STAGE EXTRAS < tests/image_imports.py`): every module the stage's code imports,
at the top of a file or inside a function, and the `kfrlhf` modules it reaches, is importable with the image's
Python. A module its code names in `require(module, extra, ...)` (`kfrlhf.common.extras`: a clear error when an
optional extra is missing) counts only when the image was built with that extra (EXTRAS, comma-separated: the image's
`org.kubeflow-rlhf.extras` label). Prints the missing ones, `module (file:line)`, and exits 1 when there are any.
Standard library only: it runs before anything else is known about the image.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path


def _module_file(package_root: Path, name: str) -> Path | None:
    """The source file of `kfrlhf.a.b` under the installed package's folder."""
    parts = name.split(".")[1:]
    base = package_root.joinpath(*parts)
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def imports(path: Path, module: str) -> list[tuple[str, int]]:
    """(absolute module name, line) of every import in the file, relative ones resolved against `module`."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            found.append((base, node.lineno))
            found += [(f"{base}.{alias.name}", node.lineno) for alias in node.names if alias.name != "*"]
    return found


def requires(path: Path) -> list[tuple[str, str, int]]:
    """(module, extra, line) of every `require("module", "extra", ...)` call in the file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) == "require":
            args = [a.value for a in node.args[:2] if isinstance(a, ast.Constant)]
            if len(args) == 2:
                found.append((*args, node.lineno))
    return found


def missing_imports(stage: str, extras: set[str]) -> list[str]:
    import kfrlhf

    root = Path(kfrlhf.__file__).parent
    optional = {module: extra for path in root.rglob("*.py") for module, extra, _ in requires(path)}
    todo = [(f"kfrlhf.{stage}.{p.stem}", p) for p in sorted((root / stage).glob("*.py")) if p.name != "__init__.py"]
    seen, missing = {name for name, _ in todo}, {}
    while todo:
        module, path = todo.pop()
        # What `require` promises its extra brings (e.g. bitsandbytes, which transformers loads by name).
        wanted = [(m, line) for m, extra, line in requires(path) if extra in extras]
        for name, line in imports(path, module) + wanted:
            top = name.split(".")[0]
            if top == "kfrlhf":
                source = _module_file(root, name)
                if source and name not in seen:
                    seen.add(name)
                    todo.append((name, source))
                continue
            if top in optional and optional[top] not in extras:
                continue
            if top not in missing and importlib.util.find_spec(top) is None:
                missing[top] = f"{top} ({path.relative_to(root.parent)}:{line})"
    return sorted(missing.values())


if __name__ == "__main__":
    gone = missing_imports(sys.argv[1], set(filter(None, sys.argv[2].split(","))) if len(sys.argv) > 2 else set())
    print("\n".join(gone) or "all imports found")
    sys.exit(1 if gone else 0)
