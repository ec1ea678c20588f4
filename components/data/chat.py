"""Texts in the policy's own chat format, when `data.chat_template` names a tokenizer that has one.

The data stage writes every text the later stages read: SFT rows, the prompts of the preference
pairs (the reward model reads prompt + answer) and the PPO/eval prompts. Rendering them all here with
one chat template gives one format from SFT to eval: HH dialogues become chat messages turn by turn
(Human -> user, Assistant -> assistant), a plain question one user message, and a prompt ends with
the template's generation prompt (`<|im_start|>assistant\\n` for ChatML), so that a sampled answer
follows it directly. Answers are stripped of the leading space HH replies carry.
"""

from __future__ import annotations

from kfrlhf.common.models import load_tokenizer

from . import hh

ROLES = {"Human": "user", "Assistant": "assistant"}


def chat_tokenizer(name: str):
    """The tokenizer of `name` (a model name or directory); ValueError when it has no chat template."""
    tokenizer = load_tokenizer(name)
    if not tokenizer.chat_template:
        raise ValueError(f"data.chat_template: the tokenizer of {name!r} has no chat template")
    return tokenizer


def messages(prompt: str, system: str = "", template: str = "") -> list[dict]:
    """Chat messages of a prompt: an HH dialogue turn by turn, else one user message (a question put into
    `template` is taken out of it again)."""
    head = [{"role": "system", "content": system}] if system else []
    if hh.is_dialogue(prompt):
        turns = hh.split_turns(prompt)
        if turns[-1] == ("Assistant", ""):  # the open reply the model writes
            turns = turns[:-1]
        return head + [{"role": ROLES[role], "content": text} for role, text in turns]
    before, _, after = template.partition("{question}")
    if template and prompt.startswith(before) and prompt.endswith(after):
        prompt = prompt[len(before) : len(prompt) - len(after)]
    return head + [{"role": "user", "content": prompt.strip()}]


def render_prompt(tokenizer, prompt: str, system: str = "", template: str = "") -> str:
    """The prompt as the model sees it before its answer."""
    return tokenizer.apply_chat_template(messages(prompt, system, template), add_generation_prompt=True, tokenize=False)


def render_dialogue(tokenizer, prompt: str, answer: str, system: str = "", template: str = "") -> str:
    """Prompt and answer as one training text, closed by the template's end of turn."""
    turns = messages(prompt, system, template) + [{"role": "assistant", "content": answer.strip()}]
    return tokenizer.apply_chat_template(turns, tokenize=False)
