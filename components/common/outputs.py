"""`--output` never destroys a user's files: a command writes into a directory only when it is new, empty,
or that command's own earlier output (its marker file names the command), and refuses anything else in one
line before any work. Commands that write a fixed set of files into a shared directory (compile) also
accept a directory holding only those names.
"""

from __future__ import annotations

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
