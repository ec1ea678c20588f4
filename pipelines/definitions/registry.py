"""Pipeline name -> builder(configure=None, config=None) returning the @dsl.pipeline function.

Found like the stages: every module of this package that defines `build_<its name>_pipeline` is the
pipeline of that name (a new pipeline is one new file). `config` (a RunConfig) gives the parameters'
defaults and what is fixed when the pipeline is built (ReST's iteration count); `rlhf compile` compiles
each one; `rlhf run --pipeline NAME` runs one through kfp.local. Needs kfp only (not kfp-kubernetes), so
the local runner can import it. `PIPELINES` imports them when first asked for; `summaries()` reads
their files only (the CLI's help).
"""

import ast
import importlib
import pkgutil
from pathlib import Path

from kfrlhf.pipelines import definitions

DEFAULT = "rlhf"


def _modules() -> dict[str, Path]:
    """Module name -> file, for the modules that define `build_<name>_pipeline`: the default first, then by name."""
    found = {}
    for module in pkgutil.iter_modules(definitions.__path__):
        path = Path(module.module_finder.path) / f"{module.name}.py"
        tree = ast.parse(path.read_text())
        if any(isinstance(n, ast.FunctionDef) and n.name == f"build_{module.name}_pipeline" for n in tree.body):
            found[module.name] = path
    return dict(sorted(found.items(), key=lambda item: (item[0] != DEFAULT, item[0])))


def summaries() -> dict[str, str]:
    """Pipeline name -> the first line of its module's docstring, without importing it."""
    return {name: ast.get_docstring(ast.parse(path.read_text())).split("\n")[0] for name, path in _modules().items()}


def __getattr__(name: str):
    if name == "PIPELINES":
        pipelines = {
            m: getattr(importlib.import_module(f"{__name__.rpartition('.')[0]}.{m}"), f"build_{m}_pipeline")
            for m in _modules()
        }
        globals()["PIPELINES"] = pipelines
        return pipelines
    raise AttributeError(name)
