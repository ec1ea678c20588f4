"""What PPO's rollouts and the eval share (`kfrlhf.common.sampling`): the distribution sampled is the
one scored, positions skip the left padding, and nothing after the first EOS counts."""

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from kfrlhf.common.sampling import answer_ends, forward, generation_config, logprobs_from_logits
from kfrlhf.ppo.config import PPOConfig
from tests.word_task import tiny_tokenizer


def test_response_mask_stops_after_the_first_eos():
    tok = tiny_tokenizer()
    eos, a, b = tok.eos_token_id, *tok.convert_tokens_to_ids(["cat", "dog"])
    ids = torch.tensor([[a, eos, b, eos], [a, b, a, b], [eos, a, a, a]])
    mask, ended, texts = answer_ends(ids, tok, [])
    assert mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]]
    assert ended.tolist() == [True, False, True] and texts[0] == "cat" and texts[2] == ""


def test_sampling_is_the_full_distribution_at_the_temperature():
    """top-k/top-p would make the sampled distribution differ from the one PPO and the eval KL score."""
    gen = generation_config(tiny_tokenizer(), 8, PPOConfig(temperature=0.7))
    assert (gen.temperature, gen.top_k, gen.top_p, gen.do_sample) == (0.7, 0, 1.0, True)
    assert not hasattr(PPOConfig(), "top_k") and not hasattr(PPOConfig(), "top_p")


def test_left_padding_does_not_move_positions():
    """GPT-2 counts positions from 0 unless told: the position ids must skip the padding."""
    tok = tiny_tokenizer()
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=2, n_head=4, n_positions=64)).eval()
    short, long = tok("the cat sat good")["input_ids"], tok("the big red dog ran far good")["input_ids"]
    pad = len(long) - len(short)
    ids = torch.tensor([[tok.pad_token_id] * pad + short, long])
    am = (ids != tok.pad_token_id).long()
    prompt_len = len(long) - 2  # the last two tokens of each row are its "response"
    logits, _ = forward(model, None, ids, am, prompt_len, temperature=0.7)
    alone, _ = forward(model, None, ids[:1, pad:], am[:1, pad:], prompt_len - pad, temperature=0.7)
    tokens = ids[:, prompt_len:]
    torch.testing.assert_close(logprobs_from_logits(logits[:1], tokens[:1]), logprobs_from_logits(alone, tokens[:1]))
    # and the temperature scales the logits
    plain = model(ids[:1, pad:]).logits[:, prompt_len - pad - 1 : -1] / 0.7
    torch.testing.assert_close(alone, plain)
