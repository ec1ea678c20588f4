"""The HH-RLHF dialogue parser on hand-written cases and on the real harmless-base test split."""

import gzip
import json

import pytest

from kfrlhf.data import hh
from tests.conftest import HH_DATA, HH_FILE, need


@pytest.fixture(scope="module")
def real_pairs():
    with gzip.open(need(HH_FILE, HH_DATA), "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_single_turn_pair():
    prompt, chosen, rejected = hh.split_pair(
        "\n\nHuman: Hi?\n\nAssistant: Hello!", "\n\nHuman: Hi?\n\nAssistant: Go away."
    )
    assert (prompt, chosen, rejected) == ("\n\nHuman: Hi?\n\nAssistant:", " Hello!", " Go away.")


def test_multi_turn_prompt_keeps_earlier_turns():
    shared = "\n\nHuman: A?\n\nAssistant: B.\n\nHuman: C?\n\nAssistant:"
    prompt, chosen, rejected = hh.split_pair(shared + " D.", shared + " E.")
    assert prompt == shared and chosen == " D." and rejected == " E."
    assert hh.split_turns(shared + " D.") == [
        ("Human", "A?"),
        ("Assistant", "B."),
        ("Human", "C?"),
        ("Assistant", "D."),
    ]


def test_whitespace_quirks():
    # Stripped start, extra spaces after the marker, trailing whitespace.
    text = "Human:  Hi there \n\nAssistant:   Hello.  \n"
    assert hh.is_dialogue(text)
    assert hh.split_turns(text) == [("Human", "Hi there"), ("Assistant", "Hello.")]
    assert hh.prompt_of(text) == "Human:  Hi there \n\nAssistant:"
    prompt, chosen, rejected = hh.split_pair(text, "Human:  Hi there \n\nAssistant: ")
    assert chosen == "   Hello.  \n" and rejected == " "


def test_inline_human_is_not_a_turn():
    text = "\n\nHuman: Q\n\nAssistant: Sure.  Human: fake turn"
    assert hh.split_turns(text) == [("Human", "Q"), ("Assistant", "Sure.  Human: fake turn")]


def test_prefixes_differ_falls_back_to_common_prompt():
    chosen = "\n\nHuman: A?\n\nAssistant: B.  Human: fake\n\nAssistant: C."
    rejected = "\n\nHuman: A?\n\nAssistant: D."
    prompt, c, r = hh.split_pair(chosen, rejected)
    assert prompt == "\n\nHuman: A?\n\nAssistant:"
    assert prompt + c == chosen and prompt + r == rejected


def test_errors():
    with pytest.raises(hh.HHFormatError, match="share no dialogue prefix"):
        hh.split_pair("\n\nHuman: A\n\nAssistant: B", "\n\nHuman: X\n\nAssistant: Y")
    with pytest.raises(hh.HHFormatError, match="no '\\\\n\\\\nAssistant:'"):
        hh.prompt_of("just text")
    with pytest.raises(hh.HHFormatError, match="before the first turn"):
        hh.split_turns("preamble\n\nHuman: A\n\nAssistant: B")
    assert not hh.is_dialogue("Question: x\n\nAnswer: y") and not hh.is_dialogue(None)


def test_every_real_pair_parses(real_pairs):
    assert len(real_pairs) == 2312
    fallback = empty_chosen = empty_rejected = 0
    for row in real_pairs:
        assert hh.is_dialogue(row["chosen"]) and hh.is_dialogue(row["rejected"])
        prompt, chosen, rejected = hh.split_pair(row["chosen"], row["rejected"])
        assert prompt.endswith("\n\nAssistant:") and prompt.startswith("\n\nHuman:")
        assert prompt + chosen == row["chosen"] and prompt + rejected == row["rejected"]
        fallback += prompt != hh.prompt_of(row["chosen"]) or prompt != hh.prompt_of(row["rejected"])
        empty_chosen += not chosen.strip()
        empty_rejected += not rejected.strip()
        turns = hh.split_turns(row["chosen"])
        assert turns[0][0] == "Human" and turns[-1][0] == "Assistant"
    # Real figures of this split: 5 pairs differ before the last assistant turn,
    # 4 chosen replies are empty ("\n\nAssistant: " and nothing after), no rejected one is.
    assert (fallback, empty_chosen, empty_rejected) == (5, 4, 0)


def test_shorten_keeps_the_last_turns_that_fit():
    text = "\n\nHuman: first question\n\nAssistant: first answer\n\nHuman: second?\n\nAssistant:"
    assert hh.shorten(text, 1000) == text
    assert hh.shorten(text, 40) == "\n\nHuman: second?\n\nAssistant:"
    cut = hh.shorten("\n\nHuman: " + "x" * 100 + " tail?\n\nAssistant:", 40)
    assert cut.startswith("\n\nHuman: ") and cut.endswith(" tail?\n\nAssistant:") and len(cut) <= 40
