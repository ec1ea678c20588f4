"""Rollout engines (`kfrlhf.common.rollout`) without vLLM: the field that picks one, the `hf` engine as the stages
use it, and the `vllm` engine's setup (which Python, the CPU KV cache it asks for). The `vllm` engine's answers
are checked against the `hf` engine's in tests/test_rollout_vllm.py."""

import sys

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from kfrlhf.common.config import ConfigError
from kfrlhf.common.rollout import make_engine, sample_batches, vllm_engine
from kfrlhf.common.sampling import generate
from kfrlhf.eval.config import EvalConfig
from kfrlhf.ppo.config import PPOConfig
from kfrlhf.rest.config import RESTConfig
from kfrlhf.rlaif.config import RLAIFConfig
from tests.word_task import PROMPTS, tiny_lm, tiny_tokenizer


@pytest.mark.parametrize("section", [PPOConfig, EvalConfig, RESTConfig, RLAIFConfig])
def test_each_sampling_stage_names_its_engine(section):
    assert section().rollout_engine == "hf"
    with pytest.raises(ConfigError, match=rf"{section.section}\.rollout_engine must be one of hf, vllm, got 'vlm'"):
        section(rollout_engine="vlm").validate()


def test_ppo_refuses_vllm_on_a_4bit_base():
    with pytest.raises(ConfigError, match="a 4-bit base is not merged"):
        PPOConfig(rollout_engine="vllm", load_in_4bit=True).validate()


def test_the_hf_engine_samples_what_generate_does_under_one_seed():
    tok = tiny_tokenizer()
    tok.padding_side = "left"
    model, cfg = tiny_lm(tok), PPOConfig(max_prompt_length=16)
    batches = sample_batches(model, tok, PROMPTS[:6], 6, cfg, batch_size=4, seed=7)
    torch.manual_seed(7)
    for r, prompts in zip(batches, (PROMPTS[:4], PROMPTS[4:6]), strict=True):
        assert torch.equal(r.input_ids, generate(model, tok, prompts, 6, cfg).input_ids)


def test_the_hf_engine_samples_the_weights_of_its_last_sync():
    tok = tiny_tokenizer()
    tok.padding_side = "left"
    models = [tiny_lm(tok, seed) for seed in (0, 1)]
    current = models[0]
    engine = make_engine(PPOConfig(max_prompt_length=16), tok, lambda: current)
    engine.sync()
    current = models[1]
    assert engine.model is models[0]
    engine.sync()
    assert engine.model is models[1]


def test_without_vllm_the_engine_says_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.delenv("RLHF_VLLM_PYTHON", raising=False)
    monkeypatch.setattr(vllm_engine.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(sys, "prefix", str(tmp_path / ".venv"))
    with pytest.raises(RuntimeError, match=r"set RLHF_VLLM_PYTHON .* or run `make vllm`"):
        vllm_engine.vllm_python()
    (tmp_path / ".venv-vllm" / "bin").mkdir(parents=True)
    with pytest.raises(RuntimeError):  # an install that did not finish
        vllm_engine.vllm_python()
    (tmp_path / ".venv-vllm" / ".installed").touch()
    assert vllm_engine.vllm_python() == str(tmp_path / ".venv-vllm" / "bin" / "python")
    monkeypatch.setenv("RLHF_VLLM_PYTHON", "/opt/vllm/bin/python")
    assert vllm_engine.vllm_python() == "/opt/vllm/bin/python"


def test_the_cpu_kv_cache_holds_keys_and_values_of_every_layer():
    """SmolLM2-135M (30 layers, 3 KV heads of 64) in fp32: 2 x 30 x 3 x 64 x 4 = 46,080 bytes a token."""
    cfg = LlamaConfig(hidden_size=576, num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3)
    with torch.device("meta"):
        model = LlamaForCausalLM(cfg)
    assert vllm_engine.kv_cache_gib(model, 2**30 // 46_080) == 1
    assert vllm_engine.kv_cache_gib(model, 2**30 // 46_080 + 1) == 2
    assert vllm_engine.kv_cache_gib(model.to(torch.bfloat16), 2 * (2**30 // 46_080)) == 1
