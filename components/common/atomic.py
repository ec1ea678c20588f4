"""Complete-or-absent files and directories: written under a temporary name and renamed when complete; a
checkpoint directory is marked complete by its `COMPLETE` manifest (every file's relative path and size,
written last). No torch here: the stages that only write reports (gate, promote) import this alone, not
`kfrlhf.common.checkpoint` (torch and transformers: ~5 CPU seconds a task start)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path

MANIFEST = "COMPLETE"


@contextlib.contextmanager
def atomic_file(path: Path):
    """Yield a temporary path beside `path`; rename it to `path` when the block succeeds."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    yield tmp
    os.replace(tmp, path)


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(text)


@contextlib.contextmanager
def atomic_dir(path: Path, manifest: bool = False):
    """Yield an empty temporary directory; on success (with `manifest`, marked complete) it replaces `path`,
    on failure (a full disk, Ctrl-C) it is removed."""
    path = Path(path)
    tmp, old = path.with_name(f".{path.name}.tmp"), path.with_name(f".{path.name}.old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if manifest:
        write_manifest(tmp)
    shutil.rmtree(old, ignore_errors=True)
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)


def write_manifest(directory: Path) -> None:
    directory = Path(directory)
    files = {
        str(p.relative_to(directory)): p.stat().st_size
        for p in sorted(directory.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }
    atomic_write_text(directory / MANIFEST, json.dumps(files, indent=1))


def is_complete(directory: Path) -> bool:
    try:
        files = json.loads((Path(directory) / MANIFEST).read_text())
        return all((Path(directory) / name).stat().st_size == size for name, size in files.items())
    except (OSError, ValueError):
        return False
