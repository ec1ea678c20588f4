"""RLAIF labelling: AI-judged preference pairs from the SFT model's own answers.

Algorithm: the merged SFT model answers every prompt twice (the shared sampling code, the stage's
seed and temperature); the judge (`judge.LMJudge`, prompted with the constitution) compares the two
answers in both orders, and a pair is kept only when both orders prefer the same answer (chosen)
over the other (rejected). Inconsistent pairs (the judge's position bias outweighs its preference,
or the two answers are the same) are dropped and counted. Training pairs come from the training
prompts, held-out pairs from the held-out prompts, so the reward stage reads the result exactly as
it reads the data stage's preference pairs. Writes `train.jsonl` / `eval.jsonl` ({prompt, chosen,
rejected}), `judgements.jsonl` (every pair, both scores and the verdict) and `metrics.json`
(pairs, kept, dropped, agreement rate, the share of judgements that chose position A).
The training pairs are judged in chunks: once even a generous bound on the share kept so far cannot
reach `min_pairs`, the stage stops there (a judge at chance stops after a few chunks, not after every
pair; the answers are all sampled before judging starts).

    rlhf run --pipeline rlaif --set rlaif.judge_model=smollm2-135m-instruct
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

from kfrlhf.common.checkpoint import atomic_write_text
from kfrlhf.common.config import from_dict
from kfrlhf.common.data_sources import read_split, write_jsonl
from kfrlhf.common.models import load_pretrained_causal_lm, load_tokenizer
from kfrlhf.common.rollout import sample_batches
from kfrlhf.common.sampling import response_texts

from .config import RLAIFConfig
from .constitution import load_constitution
from .judge import Judge, check_context, judge_both_orders, make_judge

log = logging.getLogger(__name__)


class TooFewPairs(RuntimeError):
    """The judge's consistent verdicts leave too few pairs to train a reward model on."""


def sample_pairs(model, tokenizer, prompts: list[str], cfg: RLAIFConfig) -> tuple[list[str], list[str]]:
    """Two sampled answers per prompt."""
    twice = [p for p in prompts for _ in range(2)]
    rollouts = sample_batches(model, tokenizer, twice, cfg.max_new_tokens, cfg, 2 * cfg.batch_size, cfg.seed)
    answers = response_texts(rollouts)
    return answers[0::2], answers[1::2]


CHUNK = 32  # training pairs judged between two checks that `min_pairs` is still within reach


def kept_share_bound(kept: int, judged: int, z: float = 3.0) -> float:
    """A generous upper bound on the share of pairs the judge keeps, from `kept` of `judged` (Wilson, z = 3)."""
    p, zz = kept / judged, z * z / judged
    return (p + zz / 2 + z * math.sqrt(p * (1 - p) / judged + zz / (4 * judged))) / (1 + zz)


def label_pairs(judge: Judge, prompts: list[str], questions: list[str], a: list[str], b: list[str], need: int = 0):
    """The preference rows the judge's consistent verdicts give, every judgement, and the judging's counts.
    Pairs are judged `CHUNK` at a time; with `need`, judging stops (`counts["stopped_early"]`) once
    `kept_share_bound` times all the pairs falls short of `need` kept pairs."""
    rows, judgements, first, n, stopped = [], [], 0.0, len(prompts), False
    for i in range(0, n, CHUNK):
        part = slice(i, i + CHUNK)
        judged = judge_both_orders(judge, questions[part], a[part], b[part])
        first += judged["first_preferred"] * 2 * len(judged["verdicts"])
        for prompt, x, y, verdict, scores in zip(prompts[part], a[part], b[part], judged["verdicts"], judged["scores"]):
            judgements.append({"prompt": prompt, "a": x, "b": y, "scores": scores, "verdict": verdict})
            if verdict is not None:
                chosen, rejected = (x, y) if verdict == 0 else (y, x)
                rows.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
        done = len(judgements)
        log.info("rlaif: judged %d of %d pairs, %d kept", done, n, len(rows))
        if need and done < n and kept_share_bound(len(rows), done) * n < need:
            stopped = True
            break
    done = len(judgements)
    counts = {"pairs": done, "kept": len(rows), "first_preferred": first / (2 * done) if done else 0.0}
    return rows, judgements, dict(counts, stopped_early=stopped)


def question_text(tokenizer, prompt: str) -> str:
    """The prompt as the judge reads it: the policy's chat markup (special tokens) dropped."""
    return tokenizer.decode(tokenizer(prompt, add_special_tokens=False)["input_ids"], skip_special_tokens=True)


def run(rlaif: dict, sft_model: str, prompt_data: str, output_dir: str, judge: Judge | None = None) -> dict:
    """The stage on directories (what the KFP component calls); `judge` replaces the configured judge model."""
    cfg = from_dict(RLAIFConfig, rlaif, "rlaif")
    principles = load_constitution(cfg.constitution)  # a bad file fails before any model loads
    check_context(cfg, principles)
    out = Path(output_dir)
    tokenizer = load_tokenizer(sft_model, padding_side="left")
    policy = load_pretrained_causal_lm(sft_model)
    splits = {"train": cfg.num_prompts, "eval": cfg.num_eval_prompts}
    prompts = {s: [r["prompt"] for r in read_split(prompt_data, s)][:n] for s, n in splits.items()}
    answers = {s: sample_pairs(policy, tokenizer, p, cfg) for s, p in prompts.items()}
    del policy  # the judge may be the larger model
    judge = judge or make_judge(cfg.judge_model, principles, cfg.judge_batch_size)
    counts, judgements = {}, []
    for split, ps in prompts.items():
        questions = [question_text(tokenizer, p) for p in ps]
        need = cfg.min_pairs if split == "train" else 0
        rows, judged, counts[split] = label_pairs(judge, ps, questions, *answers[split], need=need)
        write_jsonl(rows, out / f"{split}.jsonl")
        judgements += [dict(j, split=split) for j in judged]
        if counts[split]["stopped_early"]:
            break
    write_jsonl(judgements, out / "judgements.jsonl")
    pairs, kept = (sum(c[k] for c in counts.values()) for k in ("pairs", "kept"))
    metrics = {
        "rlaif_pairs": pairs,
        "rlaif_kept_pairs": kept,
        "rlaif_dropped_pairs": pairs - kept,
        "rlaif_agreement_rate": kept / pairs,
        "rlaif_train_pairs": counts["train"]["kept"],
        "rlaif_eval_pairs": counts["eval"]["kept"] if "eval" in counts else 0,
        "rlaif_first_preferred": sum(c["first_preferred"] * c["pairs"] for c in counts.values()) / pairs,
    }
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2))
    log.info("rlaif: %s", metrics)
    train = counts["train"]
    if train["stopped_early"]:
        raise TooFewPairs(
            f"the judge {cfg.judge_model!r} agreed with itself on {train['kept']} of the first {train['pairs']} "
            f"training pairs (of {len(prompts['train'])}): at that rate it cannot keep rlaif.min_pairs "
            f"{cfg.min_pairs}, so judging stopped there (judgements in {out / 'judgements.jsonl'}; "
            f"position A chosen in {train['first_preferred']:.0%} of them)"
        )
    if metrics["rlaif_train_pairs"] < cfg.min_pairs or not metrics["rlaif_eval_pairs"]:
        raise TooFewPairs(
            f"the judge {cfg.judge_model!r} agreed with itself on {kept} of {pairs} pairs "
            f"({metrics['rlaif_train_pairs']} training, {metrics['rlaif_eval_pairs']} held out; rlaif.min_pairs "
            f"{cfg.min_pairs}): a reward model would learn noise (judgements in {out / 'judgements.jsonl'})"
        )
    return metrics
