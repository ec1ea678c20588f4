"""The AI judge: which of two answers better follows the constitution, judged in both orders.

`LMJudge` asks a causal LM (any path or hub id; an instruct model with a chat template is best)
a prompt that lists the principles, the prompt the policy answered and two answers labelled A
and B, and reads its next-token log-probabilities: the score is log p("A") - log p("B"), > 0
when the first answer is preferred. No text is generated. `judge_both_orders` asks every pair
as (a, b) and as (b, a); a verdict is kept only when both orders prefer the same answer, which
cancels the judge's position bias (a judge that always says "A" keeps nothing).

A `Judge` is any callable (prompts, firsts, seconds) -> scores; the labelling needs no more.
`make_judge` builds the configured one: an `LMJudge`, or for `sample-lexicon` the tiny preset's
`LexiconJudge` (not a language model; docs/rlaif.md says why).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import torch

from kfrlhf.common import sample_data
from kfrlhf.common.config import ConfigError
from kfrlhf.common.models import device, load_causal_lm, load_tokenizer, model_limits
from kfrlhf.common.sampling import position_ids

Judge = Callable[[list[str], list[str], list[str]], torch.Tensor]

QUESTION = "Which answer better follows the principles? Reply with one letter: A or B."
SAMPLE_LEXICON = "sample-lexicon"


def judge_text(principles: list[str], prompt: str, first: str, second: str) -> str:
    """The judge's question: the principles, the prompt and both answers."""
    rules = "\n".join(f"{i}. {p}" for i, p in enumerate(principles, 1))
    return (
        f"Principles:\n{rules}\n\nPrompt:\n{prompt.strip()}\n\n"
        f"Answer A:\n{first.strip()}\n\nAnswer B:\n{second.strip()}\n\n{QUESTION}"
    )


def render(tokenizer, principles: list[str], prompt: str, first: str, second: str) -> str:
    """The judge's input: with a chat template the question is a user turn and the verdict its reply."""
    text = judge_text(principles, prompt, first, second)
    if tokenizer.chat_template:
        turn = [{"role": "user", "content": text}]
        return tokenizer.apply_chat_template(turn, add_generation_prompt=True, tokenize=False)
    return f"{text}\n\nThe better answer is"


class LMJudge:
    """A causal LM as judge; with a chat template the question is a user turn and the verdict its reply."""

    def __init__(self, model_name: str, principles: list[str], batch_size: int = 8, model=None):
        self.principles, self.batch_size = principles, batch_size
        self.tokenizer = load_tokenizer(model_name, padding_side="left")
        self.model = (model or load_causal_lm(model_name)).to(device()).eval()

    def render(self, prompt: str, first: str, second: str) -> str:
        return render(self.tokenizer, self.principles, prompt, first, second)

    def encode(self, text: str) -> tuple[list[int], int, int]:
        """The ids before the verdict and the tokens of "A" and "B" there: where the tokenizations of
        text + " A" and text + " B" part (a chat reply opens with the letter, plain text continues "is A")."""
        space = "" if self.tokenizer.chat_template else " "
        a, b = (self.tokenizer(text + space + letter)["input_ids"] for letter in "AB")
        n = next(i for i, (x, y) in enumerate(zip(a, b)) if x != y)
        return a[:n], a[n], b[n]

    @torch.no_grad()
    def __call__(self, prompts: list[str], firsts: list[str], seconds: list[str]) -> torch.Tensor:
        """log p("A") - log p("B") per row: > 0 when the judge prefers the first answer."""
        encoded = [self.encode(self.render(*row)) for row in zip(prompts, firsts, seconds)]
        scores = []
        for i in range(0, len(encoded), self.batch_size):
            ids, la, lb = zip(*encoded[i : i + self.batch_size])
            enc = self.tokenizer.pad({"input_ids": list(ids)}, return_tensors="pt").to(self.model.device)
            mask = enc["attention_mask"]
            logits = self.model(**enc, position_ids=position_ids(mask), use_cache=False).logits[:, -1]
            logp = logits.float().log_softmax(-1)
            rows = torch.arange(len(ids), device=logp.device)
            scores.append((logp[rows, list(la)] - logp[rows, list(lb)]).cpu())
        return torch.cat(scores) if scores else torch.zeros(0)


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


class LexiconJudge:
    """The tiny preset's judge, a stand-in for an instruct model on the built-in sample data: +1 for each word
    only its polite answers use, -1 for each word only its rude ones use, tips aside (`common.sample_data`); the
    score of (A, B) is A's minus B's. It reads no constitution, and two answers of one style tie in both orders."""

    def __init__(self):
        texts = (sample_data.POLITE, sample_data.RUDE, sample_data.TIPS)
        polite, rude, tips = (set(_words(" ".join(t))) for t in texts)
        self.weights = {w: 1.0 for w in polite - rude - tips} | {w: -1.0 for w in rude - polite - tips}

    def score(self, text: str) -> float:
        return sum(self.weights.get(w, 0.0) for w in _words(text))

    def __call__(self, prompts: list[str], firsts: list[str], seconds: list[str]) -> torch.Tensor:
        return torch.tensor([self.score(a) - self.score(b) for a, b in zip(firsts, seconds)])


def check_context(cfg, principles: list[str]) -> None:
    """The judge's question at the longest (the principles, a prompt of `rlaif.max_prompt_length` tokens and two
    answers of `rlaif.max_new_tokens`) fits the judge's positions; a judge whose config is not on this machine
    (a hub id not cached) is left to the stage, the lexicon judge has no limit."""
    if cfg.judge_model == SAMPLE_LEXICON:
        return
    limits = model_limits(cfg.judge_model)
    if limits is None:
        return
    positions, tokenizer = limits[0], load_tokenizer(cfg.judge_model)
    frame = len(tokenizer(render(tokenizer, principles, "", "", ""))["input_ids"])
    longest = frame + cfg.max_prompt_length + 2 * cfg.max_new_tokens
    if longest > positions:
        raise ConfigError(
            f"rlaif.constitution: the judge's question takes up to {longest} tokens ({frame} for the "
            f"{len(principles)} principles and the question, {cfg.max_prompt_length} for the prompt, "
            f"2 x {cfg.max_new_tokens} for the answers), more than the {positions} positions of the judge "
            f"{cfg.judge_model!r}: shorten the constitution or rlaif.max_prompt_length/max_new_tokens"
        )


def make_judge(model_name: str, principles: list[str], batch_size: int) -> Judge:
    return LexiconJudge() if model_name == SAMPLE_LEXICON else LMJudge(model_name, principles, batch_size)


def judge_both_orders(judge: Judge, prompts: list[str], a: list[str], b: list[str]) -> dict:
    """Each pair judged as (a, b) and (b, a). `verdicts`: 0 (a better), 1 (b better) or None (the orders
    disagree, or a score is exactly 0); `first_preferred`: the share of judgements that chose position A."""
    forward, backward = judge(prompts, a, b), judge(prompts, b, a)
    verdicts = [
        0 if f > 0 and s < 0 else 1 if f < 0 and s > 0 else None for f, s in zip(forward.tolist(), backward.tolist())
    ]
    n = len(verdicts)
    first = ((forward > 0).sum() + (backward > 0).sum()).item() / (2 * n) if n else 0.0
    scores = [[f, s] for f, s in zip(forward.tolist(), backward.tolist())]
    return {"verdicts": verdicts, "scores": scores, "first_preferred": first}
