"""Answers from a merged model, or a run's SFT and tuned models side by side (what `rlhf generate` calls).

A run directory (`rlhf run --output DIR`) holds report.json, whose `models` names the run's SFT,
tuned and reward model artifacts (paths relative to DIR), and config.yaml with the prompt template.
Generation options are `transformers.GenerationConfig` fields (the classic tutorial's: num_beams=4
do_sample=true top_k=10 temperature=0.6 max_new_tokens=128); one prompt streams to the terminal
(`TextStreamer`), a prompt file gives JSONL. `--compare` answers with both models (same seed) and
scores both answers with the run's reward model.

    rlhf generate --model runs/latest --prompt "How do I make tea?" num_beams=4 do_sample=true top_k=10
    rlhf generate --model runs/latest --prompts prompts.jsonl --compare > answers.jsonl
"""

from __future__ import annotations

import shutil
import sys
import textwrap
from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path

import torch

from kfrlhf.common.config import load_yaml
from kfrlhf.common.models import RewardScorer, check_model_dir, load_pretrained_causal_lm, load_tokenizer
from kfrlhf.common.outputs import read_report

DEFAULTS = {"max_new_tokens": 128, "do_sample": True}


@dataclass
class Source:
    """What to answer with: `models` maps sft/tuned/reward to directories; `template` is the run's (or None)."""

    models: dict[str, Path]
    template: str | None = None

    @property
    def is_run(self) -> bool:
        return "sft" in self.models


def resolve(model: str | Path) -> Source:
    """A run directory (its report.json names the models) or a merged model directory."""
    path = Path(model)
    if (path / "report.json").is_file():
        models = read_report(path / "report.json", mappings=("models",))["models"]
        if not {"sft", "tuned"} <= set(models):
            raise ValueError(f"{path}/report.json names no sft and tuned models (a run from before `rlhf generate`)")
        for role, folder in models.items():
            if not (path / folder).is_dir():
                raise ValueError(f"{path}: the run's {role} model {path / folder} is missing (moved or deleted?)")
        return Source({k: path / v for k, v in models.items()}, _run_template(path / "config.yaml"))
    if not (path / "config.json").is_file():
        raise ValueError(f"{path} is neither a run directory (report.json) nor a saved model (config.json)")
    check_model_dir(path, "--model")
    _check_causal(path)
    return Source({"tuned": path})


def _config(model_dir: Path) -> dict:
    """The model's config.json as saved (check_model_dir found it)."""
    import json

    try:
        config = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(f"{model_dir}/config.json cannot be read: {err}") from None
    return config if isinstance(config, dict) else {}


def _check_causal(model_dir: Path) -> None:
    """A model that writes text (a reward model's classifier head would fail deep in transformers)."""
    architectures = _config(model_dir).get("architectures") or []
    if architectures and not any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in architectures):
        raise ValueError(
            f"--model {model_dir} is a {architectures[0]}, not a causal LM that writes answers: give a run "
            "directory (rlhf run --output DIR) or a merged model (DIR/merge/...)"
        )


def positions(model_dir: Path) -> int:
    """The tokens a model attends to at once: its prompt plus its answer."""
    config = _config(model_dir)
    limit = config.get("max_position_embeddings") or config.get("n_positions")
    return limit if isinstance(limit, int) and limit > 0 else 10**9


def check_fits(model_dir: Path, options: dict, limit: int | None = None) -> int:
    """The prompt's token budget in `model_dir`'s `limit` positions (read from its config when not given)
    beside `options`' max_new_tokens; no room for a prompt is one line (called before the model loads)."""
    limit = limit or positions(model_dir)
    new = options.get("max_new_tokens", DEFAULTS["max_new_tokens"])
    if isinstance(new, int) and not isinstance(new, bool) and new >= limit:
        raise ValueError(
            f"max_new_tokens={new} leaves no room for the prompt in the {limit} positions of {model_dir}: "
            f"give max_new_tokens={limit // 2} or less"
        )
    return limit - new if isinstance(new, int) else limit


def _run_template(path: Path) -> str | None:
    """The prompt template in a run's config.yaml, or None without one."""
    if not path.is_file():
        return None
    config = load_yaml(path, str(path))
    template = ((config or {}).get("data") or {}).get("template") if isinstance(config, dict) else None
    if template is not None and not isinstance(template, str):
        raise ValueError(f"{path}: data.template must be text, got {str(template)[:60]}")
    return template


def read_prompts(path: str | Path) -> list[str]:
    """JSON (JSON Lines or an array; a `prompt` or `question` per row) or text (a prompt per line), gzipped
    or not: recognised by content, whatever the file's name."""
    from kfrlhf.common.data_sources import DataError, peek, read_rows

    opener, head = peek(path)
    if head.startswith((b"{", b"[")):
        prompts = []
        for n, row in read_rows(str(path)):
            prompt = row.get("prompt", row.get("question"))
            if not isinstance(prompt, str) or not prompt.strip():
                raise DataError(path, "expected a `prompt` or `question` string that is not empty", n)
            prompts.append(prompt)
    else:
        try:
            with opener(path, "rt", encoding="utf-8") as f:
                prompts = [line for line in f.read().splitlines() if line.strip()]
        except UnicodeDecodeError as err:
            raise DataError(
                path, f"not valid UTF-8 text (byte offset {err.start}): give JSONL or UTF-8 lines"
            ) from None
    if not prompts:
        raise DataError(path, "no prompts: the file is empty")
    return prompts


def generation_config(tokenizer, options: dict):
    """A GenerationConfig from DEFAULTS and `options` (GenerationConfig field names), checked strictly."""
    from transformers import GenerationConfig

    fields = {k for k in GenerationConfig().to_dict() if not k.startswith("_")}
    unknown = sorted(set(options) - fields)
    if unknown:
        raise ValueError(f"{unknown[0]} is not a transformers.GenerationConfig field (e.g. max_new_tokens, num_beams)")
    if options.get("num_return_sequences", 1) != 1:
        raise ValueError("num_return_sequences: one answer per prompt")
    ids = {"pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id}
    config = GenerationConfig(**{**DEFAULTS, **ids, **options})
    config.validate(strict=True)
    return config


class Generator:
    """A saved causal LM and its tokenizer, answering batches of prompts."""

    def __init__(self, model_dir: Path):
        self.model_dir = model_dir
        self.tokenizer = load_tokenizer(str(model_dir), padding_side="left")
        self.tokenizer.truncation_side = "left"  # a prompt too long is cut where it is farthest from the answer
        self.model = load_pretrained_causal_lm(str(model_dir))
        self.positions = positions(model_dir)

    @torch.no_grad()
    def __call__(self, prompts: list[str], options: dict, seed: int, stream: bool = False) -> list[str]:
        """`stream`: one prompt, its answer printed as it is generated."""
        from transformers import TextStreamer

        config = generation_config(self.tokenizer, options)
        # TextStreamer follows one sampled sequence: beam search prints its answer when done.
        streamer = TextStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        streamer = streamer if stream and config.num_beams == 1 else None
        budget = check_fits(self.model_dir, options, self.positions)
        torch.manual_seed(seed)
        for prompt, ids in zip(prompts, self.tokenizer(prompts, verbose=False)["input_ids"]):
            if len(ids) > budget:
                print(
                    f"rlhf generate: warning: a prompt of {len(ids)} tokens ({prompt[:40]!r}...) keeps its last "
                    f"{budget}: the model's positions hold the prompt and max_new_tokens",
                    file=sys.stderr,
                )
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True, truncation=True, max_length=budget)
        enc = enc.to(self.model.device)
        enc = {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask")}
        out = self.model.generate(**enc, generation_config=config, streamer=streamer)
        answers = self.tokenizer.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
        if stream and streamer is None:
            print(answers[0], flush=True)
        return answers


def answer(source: Source, prompts, options: dict, seed: int, batch_size: int, stream: bool, model="tuned") -> list:
    """One answer per prompt from `model` (sft or tuned), `batch_size` prompts at a time."""
    check_fits(source.models[model], options)  # before the model loads
    generator = Generator(source.models[model])
    batches = [prompts[i : i + batch_size] for i in range(0, len(prompts), batch_size)]
    return [a for batch in batches for a in generator(batch, options, seed, stream)]


def compare(source: Source, prompts: list[str], options: dict, seed: int, batch_size: int) -> list[dict]:
    """Both models' answers (same seed) and their rewards, per prompt."""
    if not source.is_run:
        raise ValueError("--compare needs a run directory (rlhf run --output DIR): it holds the SFT and reward models")
    for name in ("sft", "tuned"):
        check_fits(source.models[name], options)
    rows = [{"prompt": p} for p in prompts]
    scorer = RewardScorer(str(source.models["reward"] / "model"), batch_size)
    for name in ("sft", "tuned"):
        answers = answer(source, prompts, options, seed, batch_size, stream=False, model=name)
        for row, a, r in zip(rows, answers, scorer(prompts, answers).tolist()):
            row.update({name: a, f"reward_{name}": r})
    return rows


def side_by_side(row: dict, width: int | None = None) -> str:
    """The SFT and tuned answers in two columns, each headed by its reward."""
    width = width or shutil.get_terminal_size((100, 20)).columns
    col = max(20, (width - 3) // 2)
    left = textwrap.wrap(row["sft"].strip() or "(empty)", col)
    right = textwrap.wrap(row["tuned"].strip() or "(empty)", col)
    sft = f"SFT (reward {row['reward_sft']:+.3f})"
    head = f"{sft:<{col}} | tuned (reward {row['reward_tuned']:+.3f})"
    body = [f"{a:<{col}} | {b}" for a, b in zip_longest(left, right, fillvalue="")]
    return "\n".join([head, "-" * col + "-+-" + "-" * col, *body])
