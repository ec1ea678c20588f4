import json

import torch
from peft import LoraConfig, PeftModel, get_peft_model

from kfrlhf.common.models import load_causal_lm, load_tokenizer
from kfrlhf.merge.stage import run as merge_adapter


def test_merged_logits_match_base_plus_adapter(tmp_path):
    torch.manual_seed(0)
    # init_lora_weights=False: B is random, so the adapter really changes the logits.
    peft_model = get_peft_model(
        load_causal_lm("tiny-opt"), LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", init_lora_weights=False)
    )
    peft_model.peft_config["default"].base_model_name_or_path = "tiny-opt"
    peft_model.save_pretrained(tmp_path / "adapter")
    load_tokenizer("tiny-opt").save_pretrained(tmp_path / "adapter")

    out = merge_adapter(tmp_path / "adapter", tmp_path / "merged")
    assert (out / "model.safetensors").exists() and (out / "tokenizer_config.json").exists()
    assert "lora" not in json.dumps(json.loads((out / "config.json").read_text()))

    from transformers import AutoModelForCausalLM

    merged = AutoModelForCausalLM.from_pretrained(out).eval()
    reference = PeftModel.from_pretrained(load_causal_lm("tiny-opt"), tmp_path / "adapter").eval()
    base = load_causal_lm("tiny-opt").eval()
    ids = load_tokenizer("tiny-opt")(
        ["Question: How do I take care of tea?\n\nAnswer: Thanks"], return_tensors="pt"
    ).input_ids
    with torch.no_grad():
        a, b, c = merged(ids).logits, reference(ids).logits, base(ids).logits
    assert torch.allclose(a, b, atol=1e-4)
    assert not torch.allclose(a, c, atol=1e-2)  # the adapter mattered
