"""Crashes: inputs that used to end in a traceback (an IndexError deep in the model, a TypeError in the config
loader, a raw safetensors error) are one line naming the input, or are read as meant with a warning."""

import errno
import shutil

import pytest

from kfrlhf.common import models
from kfrlhf.pipelines.cli import main
from tests.bad_input import fails_cleanly

# name: (YAML config text, expected text)
YAML_KEYS = {
    "int-key-in-section": ("ppo:\n  1: 2\n  stepz: 3\n", "ppo: key 1 is int, not a field name"),
    "int-key-at-top": ("1: 2\nfoo: {}\n", "config: key 1 is int, not a field name"),
    "bool-key": ("sft:\n  true: 1\n", "sft: key True is bool, not a field name"),
}


@pytest.mark.parametrize("case", YAML_KEYS)
def test_a_yaml_key_that_is_not_a_name_is_one_line(case, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text, expected = YAML_KEYS[case]
    (tmp_path / "bad.yaml").write_text(text)
    fails_cleanly(capsys, tmp_path, ["config", "--config", "bad.yaml"], expected)


def test_generate_cuts_a_prompt_past_the_models_positions_with_a_warning(tiny_lm_dir, capsys):
    """tiny-opt has 512 positions: a 2108-token prompt keeps its last 512 - 8 tokens, with a warning."""
    assert main(["generate", "--model", str(tiny_lm_dir), "--prompt", "word " * 700, "max_new_tokens=8"]) == 0
    err = capsys.readouterr().err
    assert "rlhf generate: warning: a prompt of 2108 tokens" in err and "keeps its last 504:" in err
    assert "indexing errors" not in err  # transformers' own warning, for the count only


def test_generate_refuses_max_new_tokens_past_the_models_positions(tiny_lm_dir, capsys, tmp_path):
    err = fails_cleanly(
        capsys,
        tmp_path,
        ["generate", "--model", str(tiny_lm_dir), "--prompt", "hi", "max_new_tokens=600"],
        "max_new_tokens=600 leaves no room for the prompt in the 512 positions",
    )
    assert "give max_new_tokens=256 or less" in err


def test_generate_refuses_a_reward_model_in_one_line(capsys, tmp_path):
    path = tmp_path / "reward"
    models.load_reward_model(models.TINY_ENCODER).save_pretrained(path)
    models.load_tokenizer(models.TINY_ENCODER).save_pretrained(path)
    capsys.readouterr()  # the save's progress bar
    err = fails_cleanly(capsys, tmp_path, ["generate", "--model", str(path), "--prompt", "hi"], "not a causal LM")
    assert len(err) < 300


@pytest.mark.parametrize("how", ["oserror", "safetensors"])
def test_models_prepare_on_a_full_disk_is_one_line_and_leaves_nothing(how, capsys, tmp_path, monkeypatch):
    """The copy (or safetensors' save) fails with ENOSPC: one line, no .tmp folder, --output not created."""

    def full(*args, **kwargs):
        if how == "oserror":
            raise OSError(errno.ENOSPC, "No space left on device")
        from safetensors import SafetensorError

        raise SafetensorError("Error while serializing: IoError(Os { code: 28 }) No space left on device (os error 28)")

    monkeypatch.setattr(shutil, "copytree", full)
    out = tmp_path / "minilm"
    err = fails_cleanly(
        capsys, tmp_path, ["models", "prepare", "all-minilm-l6-v2", "--output", str(out)], "the disk is full under"
    )
    assert "give --output on another disk" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == []


# name: (benchmark module, argv, expected text): the benchmarks' flags are checked by argparse, before any work.
BENCHMARK_FLAGS = {
    "steps-zero": ("gpu_step", ["--steps", "0"], "argument --steps: expected a whole number >= 1, got '0'"),
    "batch-size-word": ("ppo_vs_trl", ["--batch-size", "x"], "argument --batch-size: expected a whole number >= 1"),
    "learning-rate-nan": ("gpu_step", ["--learning-rate", "nan"], "expected a finite number > 0, got 'nan'"),
    "kl-coef-negative": ("gpu_step", ["--kl-coef", "-1"], "argument --kl-coef: expected a finite number >= 0"),
    "batch-not-multiple": ("ppo_vs_trl", ["--batch-size", "6", "--no-trl"], "a multiple of --mini-batch-size"),
    "no-gpu": ("gpu_step", ["--device", "cuda"], "--device cuda: no CUDA GPU here"),
    "hh-prompts-missing": ("gpu_step", ["--prompts", "nope.jsonl.gz"], "--prompts nope.jsonl.gz: no such file"),
    "trl-python-missing": ("ppo_vs_trl", ["--trl-python", "nope/python"], "--trl-python nope/python: no such file"),
    "trl-python-other-version": ("gpu_step", ["--trl-python", "PYTHON"], "the TRL side needs trl==1.12.0"),
}


@pytest.mark.parametrize("case", BENCHMARK_FLAGS)
def test_benchmark_flags_are_refused_by_argparse(case, capsys, monkeypatch):
    import importlib
    import sys

    import torch

    module, argv, expected = BENCHMARK_FLAGS[case]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as on this machine, on any machine
    bench = importlib.import_module(f"benchmarks.{module}")
    python = sys.executable  # this venv's python: its trl is the stages' (1.16), the TRL side's venv is its own
    with pytest.raises(SystemExit) as stop:
        bench.main([a.replace("PYTHON", python) for a in argv])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and expected.replace("PYTHON", python) in err.splitlines()[-1], err


def test_a_benchmark_failure_past_argparse_is_one_line(capsys, monkeypatch):
    from benchmarks import gpu_step

    def broken(a, save):
        raise RuntimeError("TRL side failed (x):\nline one\nline two")

    monkeypatch.setattr(gpu_step, "bench", broken)
    assert gpu_step.main(["--no-trl", "--device", "cpu"]) == 2
    assert (
        capsys.readouterr().err
        == "python -m benchmarks.gpu_step: error: RuntimeError: TRL side failed (x): line one line two\n"
    )
