"""What PPO's rollouts and the eval share (`kfrlhf.common.sampling`): the distribution sampled is the
one scored, positions skip the left padding, and nothing after the first EOS counts."""

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, OPTForCausalLM

from kfrlhf.common.sampling import answer_ends, forward, generation_config, logprobs_from_logits, position_ids
from kfrlhf.ppo.config import PPOConfig
from tests.word_task import tiny_config, tiny_tokenizer


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


def full_forward(model, value_head, ids, am, prompt_len, temperature):
    """The reference: every position's logits and every layer's hidden states, sliced afterwards."""
    out = model(input_ids=ids, attention_mask=am, position_ids=position_ids(am), output_hidden_states=True)
    hidden = out.hidden_states[-1][:, prompt_len - 1 : -1]
    return out.logits[:, prompt_len - 1 : -1].float() / temperature, value_head(hidden).squeeze(-1)


@pytest.mark.parametrize("arch", ["opt", "llama", "gpt2"])
def test_response_only_forward_equals_the_full_one(arch):
    """`forward` projects only the response positions and reads the value head's input with a hook: the same
    logits, values and gradients as the full forward pass (to float rounding: 1e-5)."""
    tok = tiny_tokenizer()
    torch.manual_seed(0)
    config = {
        "opt": lambda: OPTForCausalLM(tiny_config(tok)),
        "llama": lambda: LlamaForCausalLM(
            LlamaConfig(
                vocab_size=len(tok),
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=2,
                num_attention_heads=4,
                num_key_value_heads=2,
                max_position_embeddings=64,
            )
        ),  # fmt: skip
        "gpt2": lambda: GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=2, n_head=4)),
    }
    model, value_head = config[arch]().eval(), torch.nn.Linear(32, 1)  # eval: no dropout
    ids = torch.randint(3, len(tok), (3, 12))
    am = torch.ones_like(ids)
    am[0, :3] = 0  # left padding
    results = []
    for fn in (forward, full_forward):
        model.zero_grad()
        value_head.zero_grad()
        logits, values = fn(model, value_head, ids, am, 7, 0.7)
        (logits.logsumexp(-1).sum() + values.sum()).backward()
        grads = [p.grad.clone() for p in [*model.parameters(), *value_head.parameters()] if p.grad is not None]
        results.append((logits, values, grads))
    (logits, values, grads), (ref_logits, ref_values, ref_grads) = results
    assert logits.shape == (3, 5, len(tok)) and values.shape == (3, 5)
    torch.testing.assert_close(logits, ref_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(values, ref_values, atol=1e-5, rtol=1e-5)
    assert len(grads) == len(ref_grads)
    for g, ref in zip(grads, ref_grads):
        torch.testing.assert_close(g, ref, atol=1e-5, rtol=1e-5)
