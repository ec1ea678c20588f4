"""Each config field's help, written once beside the fields (a `HELP` class attribute, merged along the class
hierarchy as `RULES` is: a subclass's text for a field wins), and what reads it: `rlhf config --explain`,
docs/configuration.md (`rlhf config --docs`, run by `make compile`) and the pipelines' parameter descriptions.
"""

from __future__ import annotations

import dataclasses


def field_help(cls) -> dict[str, str]:
    """Field name -> its help text, for every field of config class `cls` that has one."""
    found: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        found.update(klass.__dict__.get("HELP", {}))
    return {f.name: found[f.name] for f in dataclasses.fields(cls) if f.name in found}


def allowed(cls, name: str) -> str:
    """What `name` may be: its rule's wording (`RULES`, merged along the hierarchy), else ''."""
    for klass in cls.__mro__:
        rule = klass.__dict__.get("RULES", {}).get(name)
        if rule is not None:
            return rule[1]
    return ""


def summary(cls) -> str:
    """The first paragraph of the class's docstring, on one line."""
    return " ".join((cls.__doc__ or "").strip().split("\n\n")[0].split())
