from pathlib import Path

import pytest

from kfrlhf.pipelines.definitions import run_config as C

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "pipelines" / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_example_config_loads_and_matches_the_tutorial(path):
    cfg = C.load_config(None, [path])
    assert cfg.sft.model_name == "facebook/opt-1.3b" and cfg.sft.load_in_4bit
    assert cfg.reward.model_name == "microsoft/deberta-v3-base"
    assert cfg.data.template == "\n\nHuman: {question}\n\nAssistant: "  # the HH prompts' format, SFT to eval
    cfg.data.template = C.RunConfig().data.template
    assert cfg.to_dict() == C.RunConfig().to_dict()  # the file spells out the defaults, but the template
