"""The config documents itself: every field has its help once (the class's `HELP`), docs/configuration.md's
generated part is what `rlhf config --docs` writes from it (a changed help or default without regenerating
fails here), and `rlhf config --explain` reads the same text."""

import dataclasses
from pathlib import Path

import pytest

from kfrlhf.common.field_help import field_help
from kfrlhf.dpo.config import DPOConfig
from kfrlhf.pipelines.cli import main
from kfrlhf.pipelines.definitions import config_docs

PAGE = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


@pytest.mark.parametrize("section", list(config_docs._classes()))
def test_every_field_has_its_help(section):
    cls = config_docs._classes()[section]
    missing = [f.name for f in dataclasses.fields(cls) if not field_help(cls).get(f.name)]
    assert not missing, f"{section}: no HELP for {', '.join(missing)} (add it to the class's HELP)"


def test_the_docs_page_is_generated_from_the_helps():
    page = PAGE.read_text()
    assert config_docs.render(page) == page, "docs/configuration.md is stale: run make compile"


def test_a_changed_help_or_default_is_drift(monkeypatch):
    page = PAGE.read_text()
    monkeypatch.setitem(DPOConfig.HELP, "beta", "another text")
    assert config_docs.render(page) != page
    monkeypatch.undo()
    changed = dataclasses.make_dataclass("DPOConfig", [("beta", float, 0.25)], bases=(DPOConfig,))
    monkeypatch.setitem(config_docs.SECTIONS, "dpo", changed)
    assert "| `beta` | 0.1 |" in page and "| `beta` | 0.25 |" in config_docs.render(page)


def test_explain_prints_help_default_and_the_presets_value(capsys):
    assert main(["config", "--preset", "tiny", "--explain", "dpo.beta"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"dpo.beta: {DPOConfig.HELP['beta']} (> 0)\n")
    assert "default: 0.1; --preset tiny: 0.3" in out and "(> 0)" in out
    assert main(["config", "--explain", "dpo.nope"]) == 2
    assert "dpo has no field 'nope'" in capsys.readouterr().err
