import pytest

from kfrlhf.common.config import ConfigError, from_dict
from kfrlhf.pipelines.definitions.run_config import RunConfig, load_config
from kfrlhf.ppo.config import PPOConfig


def test_defaults_follow_the_tutorial():
    cfg = load_config()
    assert cfg.sft.model_name == "facebook/opt-1.3b" and cfg.reward.model_name == "microsoft/deberta-v3-base"
    assert (cfg.sft.lora_r, cfg.sft.lora_alpha, cfg.sft.lora_dropout, cfg.sft.load_in_4bit) == (16, 32, 0.05, True)
    p = cfg.ppo
    assert (p.learning_rate, p.batch_size, p.mini_batch_size, p.ppo_epochs, p.init_kl_coef, p.adaptive_kl) == (
        1.41e-5,
        32,
        4,
        4,
        0.2,
        True,
    )
    assert (p.min_new_tokens, p.max_new_tokens) == (32, 400)
    d = cfg.dpo
    assert (d.beta, d.learning_rate, d.lora_r, d.lora_alpha, d.lora_dropout) == (0.1, 5e-6, 16, 32, 0.05)


def test_precedence_preset_file_set(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("ppo:\n  steps: 7\n  batch_size: 16\nsft:\n  lora_r: 8\n")
    cfg = load_config("tiny", [f], ["ppo.steps=3", "report_to=none"])
    assert cfg.sft.model_name == "tiny-opt"  # preset
    assert cfg.sft.lora_r == 8 and cfg.ppo.batch_size == 16  # file
    assert cfg.ppo.steps == 3 and cfg.report_to == "none"  # --set


@pytest.mark.parametrize(
    "values, message",
    [
        ({"ppo": {"stepz": 1}}, "unknown key ppo.stepz"),
        ({"ppo": {"steps": "many"}}, "ppo.steps: expected an integer"),
        ({"sft": {"packing": 3}}, "sft.packing: expected true/false"),
        ({"ppo": {"batch_size": 30, "mini_batch_size": 4}}, "divisible"),
        ({"report_to": "mlflow"}, "report_to"),
        ({"dpo": {"beta": 0}}, "dpo.beta must be > 0"),
    ],
)
def test_bad_values_are_refused_with_the_key(values, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(RunConfig, values)


def test_pipeline_struct_floats_become_ints():
    # KFP passes dict parameters through a protobuf Struct, which turns 42 into 42.0.
    assert from_dict(PPOConfig, {"steps": 42.0}).steps == 42


def test_a_stage_checks_its_config_before_loading_anything(tmp_path):
    """Runs started from the KFP UI bypass the CLI: the stage entry point checks values itself."""
    from kfrlhf.ppo.stage import run as run_ppo_stage

    with pytest.raises(ConfigError, match="divisible"):
        run_ppo_stage({"batch_size": 30, "mini_batch_size": 4}, "no-model", "no-reward", "no-data", str(tmp_path))


def test_a_missing_extra_names_the_pip_extra(monkeypatch):
    import importlib.util

    from kfrlhf.common import models
    from kfrlhf.common.extras import MissingExtra

    real = importlib.util.find_spec
    missing = lambda name, *a: None if name == "bitsandbytes" else real(name, *a)  # noqa: E731
    monkeypatch.setattr(importlib.util, "find_spec", missing)
    with pytest.raises(MissingExtra, match=r"pip install 'kubeflow-rlhf\[qlora\]'"):
        models.bnb_4bit_config()


def test_floats_must_be_finite():
    with pytest.raises(ConfigError, match="ppo.target_kl must be a finite number"):
        from_dict(RunConfig, {"ppo": {"target_kl": float("inf")}})
