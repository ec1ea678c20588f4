"""Merge: fold a LoRA adapter into its base model, giving a standalone safetensors model.

The base is the adapter config's `base_model_name_or_path` (a hub id, a tiny name or a
local directory), unless `base` is given (PPO's adapter sits on the merged SFT model).
The base is loaded unquantised: QLoRA trains against 4-bit weights, the merged model is
saved in full precision with the adapter's tokenizer (or the base's).

    rlhf run     # merges twice: the SFT adapter onto its base, the PPO (or DPO) adapter onto the SFT model
"""

from __future__ import annotations

import json
from pathlib import Path

from kfrlhf.common.checkpoint import atomic_dir
from kfrlhf.common.models import load_causal_lm, load_tokenizer


def run(adapter_dir: str | Path, output_dir: str | Path, base: str | None = None) -> Path:
    from peft import PeftModel

    adapter_dir, output_dir = Path(adapter_dir), Path(output_dir)
    base = base or json.loads((adapter_dir / "adapter_config.json").read_text())["base_model_name_or_path"]
    # PEFT falls back to a pickled adapter_model.bin when there is no safetensors file: refuse it.
    if not (adapter_dir / "adapter_model.safetensors").is_file():
        raise FileNotFoundError(f"{adapter_dir}: no adapter_model.safetensors (pickled adapters are not loaded)")
    model = PeftModel.from_pretrained(load_causal_lm(base), adapter_dir).merge_and_unload()
    has_tokenizer = (adapter_dir / "tokenizer_config.json").exists()
    with atomic_dir(output_dir) as tmp:  # never a half-written model
        model.save_pretrained(tmp, safe_serialization=True)
        load_tokenizer(str(adapter_dir) if has_tokenizer else base).save_pretrained(tmp)
    return output_dir
