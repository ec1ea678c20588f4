"""What a memory estimate needs of a model (`Shape`): its parameter counts and dimensions, read from its
config.json without its weights (the model built on the meta device), or from SmolLM2's known shapes.
`rlhf plan` (plan.py) and benchmarks/gpu_step.py use them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# SmolLM2's dimensions (the hub configs of HuggingFaceTB/SmolLM2-{135M,360M,1.7B}); all tie the embeddings.
# `rlhf plan` takes them as model names (smollm2-1.7b), benchmarks/gpu_step.py builds its models from them.
SMOLLM2_VOCAB = 49152
SMOLLM2_SHAPES = {
    "135m": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                 num_key_value_heads=3, rope_theta=100000.0),
    "360m": dict(hidden_size=960, intermediate_size=2560, num_hidden_layers=32, num_attention_heads=15,
                 num_key_value_heads=5, rope_theta=100000.0),
    "1.7b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=24, num_attention_heads=32,
                 num_key_value_heads=32, rope_theta=130000.0),
}  # fmt: skip
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


@dataclass(frozen=True)
class Shape:
    """What the estimate needs of a model: its counts and dimensions."""

    name: str
    params: int  # every weight, a tied embedding once
    linear: int  # weights of the linear layers but the output layer: what 4-bit quantises
    lora_io: int  # sum of in + out features over those layers: a LoRA adapter of rank r has r x lora_io weights
    lora_layers: int  # how many there are
    hidden: int
    layers: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    dtype_bytes: int  # as saved (config.json's dtype; fp32 when it names none)
    sdpa: bool  # attention through torch's SDPA kernels (no scores kept); False: eager attention

    def lora(self, r: int) -> int:
        return r * self.lora_io


def shape_of(model, name: str = "") -> Shape:
    """The shape of a built model (on any device, the meta device included)."""
    import torch

    cfg = model.config.get_text_config()
    out = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    heads_out = ("lm_head", "score", "classifier")
    linears = [
        m
        for n, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and m is not out and n.rsplit(".", 1)[-1] not in heads_out
    ]
    hidden = cfg.hidden_size
    heads = cfg.num_attention_heads
    dtype = getattr(cfg, "dtype", None)
    return Shape(
        name=name or getattr(cfg, "name_or_path", "") or type(model).__name__,
        params=sum(p.numel() for p in model.parameters()),  # parameters() yields a shared tensor once
        linear=sum(m.weight.numel() for m in linears),
        lora_io=sum(m.in_features + m.out_features for m in linears),
        lora_layers=len(linears),
        hidden=hidden,
        layers=cfg.num_hidden_layers,
        intermediate=getattr(cfg, "intermediate_size", None) or getattr(cfg, "ffn_dim", None) or 4 * hidden,
        heads=heads,
        kv_heads=getattr(cfg, "num_key_value_heads", None) or heads,
        head_dim=getattr(cfg, "head_dim", None) or hidden // heads,
        vocab=cfg.vocab_size,
        dtype_bytes=DTYPE_BYTES.get(str(dtype).removeprefix("torch."), 4),
        sdpa=bool(getattr(model, "_supports_sdpa", False)),
    )


def shape_from_config(config, name: str, classifier: bool = False) -> Shape:
    """`config` built on the meta device (no memory) as a causal LM, or a one-output sequence classifier."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    if classifier:
        config.num_labels = 1
    auto = AutoModelForSequenceClassification if classifier else AutoModelForCausalLM
    with torch.device("meta"):
        model = auto.from_config(config, trust_remote_code=False)
    return shape_of(model, name)


def smollm2_config(size: str, **kwargs):
    """A LlamaConfig of SmolLM2's `size` (135m, 360m, 1.7b)."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=SMOLLM2_VOCAB,
        max_position_embeddings=8192,
        tie_word_embeddings=True,
        **SMOLLM2_SHAPES[size],
        **kwargs,
    )


def model_shape(name: str, what: str, classifier: bool = False) -> Shape:
    """The shape of the model `what` (a setting or option) names: a tiny or packaged name, `smollm2-<size>`, a
    local directory or config.json, or a hub id whose config is in the local cache. Raises ConfigError."""
    from kfrlhf.common.config import ConfigError
    from kfrlhf.common.models import is_tiny, load_causal_lm, load_reward_model
    from kfrlhf.common.packaged_models import is_packaged, resolve

    if is_tiny(name):
        return shape_of(load_reward_model(name) if classifier else load_causal_lm(name), name)
    size = name.lower().removeprefix("smollm2-")
    if name.lower().startswith("smollm2-") and size in SMOLLM2_SHAPES:
        return shape_from_config(smollm2_config(size), name, classifier)
    from transformers import AutoConfig

    path = Path(resolve(name) if is_packaged(name) else name)
    known = ", ".join(f"smollm2-{s}" for s in SMOLLM2_SHAPES)
    if path.is_dir() and not (path / "config.json").is_file():
        raise ConfigError(
            f"{what}: {path} holds no config.json: rlhf plan reads the model's shape from it; give a saved model "
            f"directory, or a known shape ({known})"
        )
    try:
        # Local files only (a folder or the cache): nothing is downloaded.
        config = AutoConfig.from_pretrained(str(path), local_files_only=True, trust_remote_code=False)  # nosec B615
    except (OSError, ValueError) as err:
        raise ConfigError(
            f"{what}: {name} is no local model folder and its config.json is not in the Hugging Face cache "
            f"(rlhf plan reads no network): give a local model folder (a directory with config.json), or a known "
            f"shape ({known}); {' '.join(str(err).split())[:200]}"
        ) from None
    return shape_from_config(config, name, classifier)
