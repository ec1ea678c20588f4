"""The benchmarks' command lines are checked as `rlhf`'s are: argparse types for counts and rates, the GPU,
TRL 1.12 and the HH prompts looked for before any work, and anything that still fails is one line."""

from __future__ import annotations

import functools
import math
import os
import subprocess  # nosec B404: the TRL venv's python asked for its trl version, fixed argv
import sys
from argparse import ArgumentTypeError
from pathlib import Path

TRL_VERSION = "1.12.0"


def count(text: str) -> int:
    """A whole number >= 1 (steps, batch sizes, lengths, epochs, LoRA rank)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def rate(text: str) -> float:
    """A finite number > 0 (learning rates, timeouts)."""
    return _number(text, lambda v: v > 0, "> 0")


def weight(text: str) -> float:
    """A finite number >= 0 (coefficients)."""
    return _number(text, lambda v: v >= 0, ">= 0")


def _number(text: str, ok, wanted: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not ok(value):
        raise ArgumentTypeError(f"expected a finite number {wanted}, got {text!r}")
    return value


def check_device(parser, device: str) -> None:
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA GPU here (torch.cuda.is_available() is False): use --device cpu")


def check_trl(parser, python: str | None, path: str | None = None) -> None:
    """`python` (the TRL side's interpreter, with `path` first on its PYTHONPATH) has trl TRL_VERSION."""
    if python is None:
        return
    fix = f"make a venv with trl=={TRL_VERSION} and give its python (make gpu-wheels carries it), or pass --no-trl"
    if not Path(python).is_file():
        parser.error(f"--trl-python {python}: no such file: {fix}")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [path, os.environ.get("PYTHONPATH")]))}
    ask = "import importlib.metadata as m; print(m.version('trl'))"
    proc = subprocess.run([python, "-c", ask], capture_output=True, text=True, env=env, timeout=60)  # nosec B603
    found = proc.stdout.strip() if proc.returncode == 0 else "no trl"
    if found != TRL_VERSION:
        parser.error(f"--trl-python {python} has {found}, the TRL side needs trl=={TRL_VERSION}: {fix}")


def check_prompts(parser, path: Path | None, flag: str = "--prompts") -> None:
    if path is not None and str(path) and not Path(path).is_file():
        parser.error(f"{flag} {path}: no such file: give an HH-RLHF jsonl.gz (make gpu-wheels fetches it)")


def one_line(prog: str):
    """`main` whose failures (past argparse's own) are one line on stderr and exit 2, as `rlhf`'s are."""

    def wrap(main):
        @functools.wraps(main)
        def guarded(argv=None):
            try:
                return main(argv)
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as err:
                message = " ".join(str(err).split()) or type(err).__name__
                print(f"{prog}: error: {type(err).__name__}: {message[:2000]}", file=sys.stderr)
                return 2

        return guarded

    return wrap
