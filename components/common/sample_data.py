"""The built-in sample data (`sample` as a dataset source): deterministic, seeded, no download.

It is designed so that every stage of the tiny preset visibly learns:
- SFT answers are helpful-and-polite or curt-and-rude in equal measure, so the SFT model
  learns to produce both styles;
- preference pairs prefer the polite answer to the rude one for the same question, so the
  reward model has one clear signal to pick up; both answers carry the same tip and have the
  same length (POLITE[i] and RUDE[i] match character for character), so length says nothing
  and the reward model has to learn the content;
- PPO then has room to move: raising the share of polite answers raises the reward.
"""

from __future__ import annotations

import random

TOPICS = [
    "bread",
    "tea",
    "gardens",
    "bikes",
    "rivers",
    "stars",
    "chess",
    "music",
    "paint",
    "books",
    "birds",
    "maps",
    "soup",
    "clocks",
    "boats",
    "trees",
    "shoes",
    "kites",
    "lamps",
    "bees",
]
QUESTIONS = [
    "How do I take care of {t}?",
    "What should I know about {t}?",
    "Can you help me with {t}?",
    "Where do I start with {t}?",
    "Why do people like {t}?",
]
TIPS = [
    "start small and learn a little about {t} every day",
    "ask a friend who knows {t} well and practice together",
    "read a short guide about {t} and try one step at a time",
    "keep notes on {t} and be patient with yourself",
]
POLITE = [
    "Thank you for asking! A good idea is to {tip}. I hope this helps you.",
    "Great question, happy to help. Please {tip}. Good luck with it!",
    "Thanks for the question. I suggest you {tip}. Have a nice day!",
]
RUDE = [
    "Ugh, you again? If you really must know, just {tip}. Now go away, ok.",
    "What a dumb question. Fine, so {tip}. Stop wasting my time, ok?",
    "Not this again. Whatever, {tip}. And leave me alone after it!!",
]


def _pair(rng: random.Random) -> tuple[str, str, str]:
    topic = rng.choice(TOPICS)
    question = rng.choice(QUESTIONS).format(t=topic)
    tip = rng.choice(TIPS).format(t=topic)
    style = rng.randrange(len(POLITE))
    return question, POLITE[style].format(tip=tip), RUDE[style].format(tip=tip)


def sft_records(n: int = 2000, seed: int = 0) -> list[dict]:
    """Question/response rows, half polite, half rude (OpenOrca's column names)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        question, polite, rude = _pair(rng)
        rows.append({"system_prompt": "", "question": question, "response": polite if i % 2 == 0 else rude})
    return rows


def preference_records(n: int = 1000, seed: int = 1) -> list[dict]:
    """Chosen (polite) / rejected (rude) answers to the same question."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        question, polite, rude = _pair(rng)
        rows.append({"prompt": question, "chosen": polite, "rejected": rude})
    return rows


def prompt_records(n: int = 1280, seed: int = 2) -> list[dict]:
    """Questions alone, for PPO rollouts and evaluation."""
    rng = random.Random(seed)
    return [{"prompt": _pair(rng)[0]} for _ in range(n)]


def corpus() -> list[str]:
    """Every word the sample data can produce, for building the tiny tokenizer."""
    lines = [f"Question: {q.format(t=t)}\n\nAnswer: " for q in QUESTIONS for t in TOPICS]
    lines += [p.format(tip=tip.format(t=t)) for p in POLITE for tip in TIPS for t in TOPICS]
    lines += [r.format(tip=tip.format(t=t)) for r in RUDE for tip in TIPS for t in TOPICS]
    return lines
