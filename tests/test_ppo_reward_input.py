"""The reward model sees the response: prompts are cut from the left, a response only when it alone
is too long (`kfrlhf.common.models.reward_inputs`, what PPO, eval and the reward stage share)."""

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import OPTForSequenceClassification, PreTrainedTokenizerFast

from kfrlhf.common.models import RewardScorer, reward_inputs
from kfrlhf.pipelines.definitions.run_config import load_config
from tests.word_task import tiny_config, tiny_tokenizer

LONG_PROMPT = " ".join(["the big red dog ran far away"] * 4)  # 28 words


def bert_tokenizer() -> PreTrainedTokenizerFast:
    """BERT's shape: [CLS] text [SEP], no EOS."""
    vocab = {w: i for i, w in enumerate("[PAD] [UNK] [CLS] [SEP] a b c d".split())}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]"
    )


def test_the_prompt_is_cut_from_the_left_and_the_response_kept():
    tok = tiny_tokenizer()
    words = lambda ids: tok.convert_ids_to_tokens(ids)  # noqa: E731
    (ids, short), cut = reward_inputs(tok, [LONG_PROMPT, "the cat"], ["good cat sat", "good"], max_length=10)
    assert words(ids) == ["big", "red", "dog", "ran", "far", "away", "good", "cat", "sat", "<eos>"]
    assert words(short) == ["the", "cat", "good", "<eos>"] and cut == [True, False]
    # A response longer than the budget alone keeps its beginning and nothing of the prompt.
    (ids,), cut = reward_inputs(tok, ["the cat"], [" ".join(["good"] * 12)], max_length=10)
    assert words(ids) == ["good"] * 9 + ["<eos>"] and cut == [True]


def test_special_tokens_of_a_bert_tokenizer_frame_the_text():
    tok = bert_tokenizer()
    (ids,), _ = reward_inputs(tok, ["a b c d"], ["d c"], max_length=6)
    assert ids == [2, 6, 7, 7, 6, 3]  # [CLS] c d d c [SEP]: no EOS to add
    tok.eos_token = tok.sep_token  # what the reward stage gives such tokenizers: still one [SEP]
    assert reward_inputs(tok, ["a b c d"], ["d c"], max_length=6)[0] == [ids]


def test_two_responses_after_a_long_prompt_score_differently(tmp_path):
    tok = tiny_tokenizer()
    tok.model_max_length = 12
    torch.manual_seed(0)
    OPTForSequenceClassification(tiny_config(tok, num_labels=1)).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    scores = RewardScorer(str(tmp_path))([LONG_PROMPT] * 2, ["good good good", "bad cat ran"])
    assert scores[0] != scores[1]


def test_a_response_budget_beyond_the_reward_model_is_refused():
    with pytest.raises(ValueError, match=r"ppo.max_new_tokens \(65\) exceeds reward.max_length \(64\)"):
        load_config("tiny", overrides=["ppo.max_new_tokens=65"])
    with pytest.raises(ValueError, match=r"eval.max_new_tokens \(600\) exceeds reward.max_length \(512\)"):
        load_config(None, overrides=["eval.max_new_tokens=600"])


def test_scores_do_not_depend_on_the_batch_they_are_scored_in(tmp_path):
    """PPO scores a step's answers `ppo.reward_batch_size` at a time: a larger batch pads more, and padding
    must not move a score."""
    tok = tiny_tokenizer()
    torch.manual_seed(0)
    OPTForSequenceClassification(tiny_config(tok, num_labels=1)).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    prompts = [" ".join(["good"] * (1 + i % 5)) for i in range(12)]
    responses = [" ".join(["bad", "cat", "ran"][: 1 + i % 3]) for i in range(12)]
    one_by_one = RewardScorer(str(tmp_path), batch_size=1)(prompts, responses)
    all_at_once = RewardScorer(str(tmp_path), batch_size=64)(prompts, responses)
    assert len(set(one_by_one.tolist())) > 3  # the inputs differ, so do their scores
    torch.testing.assert_close(all_at_once, one_by_one, atol=1e-5, rtol=1e-5)
