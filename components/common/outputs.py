"""`--output` never destroys a user's files: a command writes into a directory only when it is new, empty,
or that command's own earlier output (its marker file names the command), and refuses anything else in one
line before any work. Commands that write a fixed set of files into a shared directory (compile) also
accept a directory holding only those names.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

MARKER = ".rlhf-output"


class OutputRefused(ValueError):
    """The --output path holds something the command did not write."""


def check_output_dir(path: str | Path, command: str, names: frozenset[str] = frozenset(), flag="--output") -> Path:
    """`path` if `command` may write into it; OutputRefused naming the path and what to do otherwise."""
    if not str(path).strip():  # before Path(), which reads "" as "."
        raise OutputRefused(f"{flag} must name a directory, got an empty string")
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputRefused(f"{flag} {path} is a file, not a directory: give a new or empty directory")
    if not path.exists() or _marked_by(path) == command:
        return path
    foreign = sorted(p.name for p in path.iterdir() if p.name not in names)
    if foreign:
        raise OutputRefused(
            f"{flag} {path} holds files that rlhf {command} did not write ({', '.join(foreign[:3])}"
            f"{', ...' if len(foreign) > 3 else ''}): give a new or empty directory; nothing was changed"
        )
    return path


def mark(path: str | Path, command: str) -> None:
    """Record `path` (a directory) as `command`'s output."""
    (Path(path) / MARKER).write_text(f"rlhf {command}\n")


def _marked_by(path: Path) -> str | None:
    try:
        return (path / MARKER).read_text().strip().removeprefix("rlhf ")
    except (OSError, UnicodeDecodeError):
        return None


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
