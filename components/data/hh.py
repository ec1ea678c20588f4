"""Anthropic HH-RLHF dialogues: `\\n\\nHuman: ...\\n\\nAssistant: ...`, one or more turns.

A preference pair is two whole dialogues (chosen, rejected) that share every turn but the
last assistant reply. `split_pair` cuts them into the shared prompt, which ends with the
last `\\n\\nAssistant:` marker, and the two final replies, so that `prompt + response` is
exactly the original text (the reply keeps its leading space, as the tokenizer saw it).

Quirks seen in the real data (harmless-base test split): some replies contain an inline
`Human:` without the blank line (not a turn boundary), a few dialogues end with an empty
reply, and a few pairs differ before their last assistant turn (the model wrote a fake
extra turn). For those the prompt is the longest common prefix that ends at an
`\\n\\nAssistant:` marker.
"""

from __future__ import annotations

import re

ASSISTANT = "\n\nAssistant:"
# A turn starts after a blank line, or at the very start of a (stripped) dialogue.
_TURN = re.compile(r"(?:^\s*|\n\n)(Human|Assistant):")


class HHFormatError(ValueError):
    """The text is not an HH dialogue, or a pair shares no prompt."""


def is_dialogue(text: object) -> bool:
    """True when `text` looks like an HH dialogue: starts with a human turn, has an assistant turn."""
    return isinstance(text, str) and text.lstrip().startswith("Human:") and ASSISTANT in text


def split_turns(text: str) -> list[tuple[str, str]]:
    """`[(role, text), ...]` with role "Human" or "Assistant" and each turn's text stripped."""
    marks = list(_TURN.finditer(text))
    if not marks:
        raise HHFormatError("no 'Human:' or 'Assistant:' turn found")
    if text[: marks[0].start()].strip():
        raise HHFormatError("text before the first turn marker")
    ends = [m.start() for m in marks[1:]] + [len(text)]
    return [(m.group(1), text[m.end() : end].strip()) for m, end in zip(marks, ends)]


def prompt_of(text: str) -> str:
    """The dialogue up to and including its last `\\n\\nAssistant:` marker (a PPO prompt)."""
    cut = text.rfind(ASSISTANT)
    if cut < 0:
        raise HHFormatError("no '\\n\\nAssistant:' turn found")
    return text[: cut + len(ASSISTANT)]


def split_pair(chosen: str, rejected: str) -> tuple[str, str, str]:
    """`(prompt, chosen_response, rejected_response)` of an HH preference pair."""
    prompt = prompt_of(chosen)
    if not rejected.startswith(prompt):
        prompt = _common_prompt(chosen, rejected)
    return prompt, chosen[len(prompt) :], rejected[len(prompt) :]


def _common_prompt(a: str, b: str) -> str:
    """Longest common prefix of `a` and `b` that ends with an `\\n\\nAssistant:` marker."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    cut = a.rfind(ASSISTANT, 0, n)
    if cut < 0:
        raise HHFormatError("chosen and rejected share no dialogue prefix ending with '\\n\\nAssistant:'")
    return a[: cut + len(ASSISTANT)]


def shorten(prompt: str, max_chars: int) -> str:
    """The prompt's last turns that fit in `max_chars`, starting at a human turn; at least the last
    human turn, whose text is cut on the left when it alone is too long."""
    if len(prompt) <= max_chars:
        return prompt
    starts = [m.start() for m in re.finditer(r"(?:^|\n\n)Human:", prompt)]
    fitting = [s for s in starts if len(prompt) - s <= max_chars]
    if fitting:
        return prompt[fitting[0] :]
    head = "\n\nHuman: "
    return head + prompt[len(prompt) - max(max_chars - len(head), len(ASSISTANT) + 1) :].lstrip()
