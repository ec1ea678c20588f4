"""`--output` never destroys a user's files: a command writes into a directory only when it is new, empty,
or that command's own earlier output (its marker file names the command), and refuses anything else in one
line before any work. A command that writes a fixed set of files (compile) lists them in the marker and
replaces only files listed there: a user's `rlhf.yaml` or `kustomization.yaml` is refused, whatever its name.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
from pathlib import Path

MARKER = ".rlhf-output"


class OutputRefused(ValueError):
    """The --output path holds something the command did not write."""


def check_output_dir(path: str | Path, command: str, names: bool = False, flag="--output") -> Path:
    """`path` if `command` may write into it; OutputRefused naming the path and what to do otherwise.
    `names`: the command lists the files it writes in the marker (`mark(..., written)`), and the directory
    may hold only those; otherwise a directory the command marked is wholly its own."""
    if not str(path).strip():  # before Path(), which reads "" as "."
        raise OutputRefused(f"{flag} must name a directory, got an empty string")
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputRefused(f"{flag} {path} is a file, not a directory: give a new or empty directory")
    for parent in path.resolve().parents:  # a run's folder is its own: a rerun of it may replace what is inside
        owner, _ = _marker(parent)
        if owner:
            raise OutputRefused(
                f"{flag} {path} is inside {parent}, the output of rlhf {owner}: give a folder outside it"
            )
    if not path.exists():
        return path
    owner, written = _marker(path)
    if owner == command and not names:
        return path
    mine = written if owner == command else set()
    foreign = sorted(p.name for p in path.iterdir() if p.name not in mine | {MARKER})
    if foreign:
        raise OutputRefused(
            f"{flag} {path} holds files that rlhf {command} did not write ({', '.join(foreign[:3])}"
            f"{', ...' if len(foreign) > 3 else ''}; its {MARKER} lists what it wrote): give a new or empty "
            "directory, or move them away; nothing was changed"
        )
    return path


@contextlib.contextmanager
def disk_full(where: str | Path, hint: str):
    """A full disk while writing under `where` as one line with `hint`: an OSError ENOSPC, or safetensors'
    SafetensorError, which names the OS error only in its text."""
    try:
        yield
    except Exception as err:
        if getattr(err, "errno", None) != errno.ENOSPC and "(os error 28)" not in str(err):
            raise
        raise OSError(errno.ENOSPC, f"the disk is full under {where}: {hint}") from None


def mark(path: str | Path, command: str, written: tuple[str, ...] = ()) -> None:
    """Record `path` (a directory) as `command`'s output; `written`: the file names it holds, kept
    with the ones an earlier run of the command listed."""
    owner, before = _marker(Path(path))
    names = sorted(set(written) | (before if owner == command else set()))
    (Path(path) / MARKER).write_text("".join(f"{line}\n" for line in [f"rlhf {command}", *names]))


def _marker(path: Path) -> tuple[str | None, set[str]]:
    """(the command that marked `path`, the file names its marker lists)."""
    try:
        first, *names = (path / MARKER).read_text().splitlines()
    except (OSError, UnicodeDecodeError, ValueError):
        return None, set()
    return first.strip().removeprefix("rlhf "), {n for n in names if n}


def read_report(path: str | Path, numbers: tuple[str, ...] = (), mappings: tuple[str, ...] = ()) -> dict:
    """A JSON report another command wrote (report.json), with finite `numbers` and `mappings` of text;
    anything else (truncated, non-finite, missing keys, wrong shape) is one line naming the file."""
    path = Path(path)
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        problem = err.strerror if isinstance(err, OSError) else " ".join(str(err).split())[:200]
        raise ValueError(f"{path} cannot be read ({problem}): run the command that writes it again") from None
    if not isinstance(report, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(report).__name__}")
    missing = [key for key in (*numbers, *mappings) if key not in report]
    if missing:
        raise ValueError(f"{path} has no {', '.join(missing)}: not a finished rlhf run's report (run it again)")
    for key in numbers:
        value = report[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{path}: {key} must be a finite number, got {str(value)[:60]}")
    for key in mappings:
        value = report[key]
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise ValueError(f"{path}: {key} must map names to paths, got {str(value)[:60]}")
    return report
