"""The real models PyPI packages ship: SmolLM2-135M-Instruct converted from its GGUF, all-MiniLM-L6-v2,
and the `small` preset that uses them on HH-RLHF."""

import pytest
import torch

from kfrlhf.common import models, packaged_models
from kfrlhf.data.loaders import format_problem
from kfrlhf.pipelines.definitions import run_config as config
from tests.conftest import HH_FILE


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    return packaged_models.prepare_smollm2(tmp_path_factory.mktemp("models") / "smollm2")


def test_smollm2_gguf_becomes_a_safetensors_model_that_answers(smollm2):
    assert (smollm2 / "model.safetensors").is_file()
    tok = models.load_tokenizer(str(smollm2))
    model = models.load_pretrained_causal_lm(str(smollm2))  # safetensors only, no remote code
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}], add_generation_prompt=True, tokenize=False
    )
    enc = tok(prompt, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=12, do_sample=False)
    answer = tok.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer and tok.eos_token == "<|im_end|>"
    assert packaged_models.prepare_smollm2(smollm2) == smollm2  # converted once


def test_minilm_is_a_reward_model_base_with_an_eos():
    model = models.load_reward_model(packaged_models.MINILM)
    tok = models.load_tokenizer(packaged_models.MINILM)
    assert model.config.model_type == "bert" and model.config.num_labels == 1
    assert tok.eos_token == tok.sep_token == "[SEP]"  # TRL's RewardTrainer appends an EOS


def test_small_preset_is_one_format_on_one_source():
    cfg = config.load_config("small", overrides=[f"data.preference_dataset={HH_FILE}"])
    assert cfg.sft.model_name == cfg.data.chat_template == packaged_models.SMOLLM2
    assert cfg.reward.model_name == packaged_models.MINILM
    assert cfg.data.sft_dataset == cfg.data.prompt_dataset == ""  # both from the preference pairs
    assert not (cfg.sft.bf16 or cfg.reward.bf16 or cfg.sft.load_in_4bit)  # fp32 on a CPU
    assert format_problem(cfg.data) is None
