"""The upstream files in tests/upstream/ are the ones its README names: each file's sha256 as listed, every file
listed, and (where ../shared is beside the repository) still the same as the team's copy they were taken from."""

import hashlib
import re

from tests.conftest import SHARED, UPSTREAM

ROW = re.compile(r"^\| `(?P<path>[^`]+)` \| [^|]+ \| `(?P<sha256>[0-9a-f]{64})` \|$", re.MULTILINE)


def test_the_copies_are_the_files_the_readme_names():
    listed = {m["path"]: m["sha256"] for m in ROW.finditer((UPSTREAM / "README.md").read_text())}
    present = {p.relative_to(UPSTREAM).as_posix() for p in UPSTREAM.rglob("*") if p.is_file() and p.name != "README.md"}
    assert listed and set(listed) == present, (
        f"listed but absent: {set(listed) - present}, unlisted: {present - set(listed)}"
    )
    for path, sha256 in listed.items():
        assert hashlib.sha256((UPSTREAM / path).read_bytes()).hexdigest() == sha256, f"{path} changed"
        team = SHARED / path
        if team.exists():
            assert team.read_bytes() == (UPSTREAM / path).read_bytes(), f"{path} differs from {team}"
