"""Precision this machine cannot run: bf16 falls back to fp32 with a warning, 4-bit without bitsandbytes is refused."""

import importlib.util
import logging

import pytest

from kfrlhf.common import trainer_args
from kfrlhf.common.extras import MissingExtra
from kfrlhf.pipelines.definitions import run_config as config
from kfrlhf.pipelines.local.run import run_local


def test_bf16_without_a_bf16_gpu_falls_back_to_fp32(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(trainer_args, "bf16_supported", lambda: False)
    cfg = config.load_config(None).sft  # the tutorial's bf16: true
    with caplog.at_level(logging.WARNING):
        args = trainer_args.trainer_args(cfg, tmp_path, "none", "sft")
    assert cfg.bf16 and args["bf16"] is False
    assert "sft.bf16: this machine has no GPU with bf16 support; training in fp32" in caplog.text
    monkeypatch.setattr(trainer_args, "bf16_supported", lambda: True)
    assert trainer_args.trainer_args(cfg, tmp_path, "none", "sft")["bf16"] is True


def test_4bit_without_bitsandbytes_is_refused_before_any_stage(tmp_path, monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else find_spec(name, *a)
    )
    cfg = config.load_config("tiny", overrides=["sft.load_in_4bit=true"])
    with pytest.raises(MissingExtra, match=r"sft.load_in_4bit \(QLoRA\) needs the bitsandbytes package"):
        run_local(cfg, tmp_path / "out")
    assert not (tmp_path / "out").exists()
