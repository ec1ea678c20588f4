"""What PPO's rollouts and the eval share (`kfrlhf.common.sampling`): the distribution sampled is the
one scored, positions skip the left padding, and nothing after the first EOS counts."""

import math

import pytest
import torch
import torch.nn.functional as F
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, OPTForCausalLM

from kfrlhf.common.sampling import (
    answer_ends,
    entropy_from_logits,
    forward,
    generation_config,
    logprobs_from_logits,
    position_ids,
)
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
    logits, _ = forward(model, None, ids, am, prompt_len)
    alone, _ = forward(model, None, ids[:1, pad:], am[:1, pad:], prompt_len - pad)
    tokens = ids[:, prompt_len:]
    padded, unpadded = (logprobs_from_logits(x[:1], tokens[:1], 0.7) for x in (logits, alone))
    torch.testing.assert_close(padded, unpadded)
    plain = model(ids[:1, pad:]).logits[:, prompt_len - pad - 1 : -1]
    torch.testing.assert_close(alone, plain)


def full_forward(model, value_head, ids, am, prompt_len):
    """The reference: every position's logits and every layer's hidden states, sliced afterwards."""
    out = model(input_ids=ids, attention_mask=am, position_ids=position_ids(am), output_hidden_states=True)
    hidden = out.hidden_states[-1][:, prompt_len - 1 : -1]
    return out.logits[:, prompt_len - 1 : -1], value_head(hidden).squeeze(-1)


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
        logits, values = fn(model, value_head, ids, am, 7)
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


def test_entropy_and_logprobs_from_logits():
    logits = torch.log(torch.tensor([[0.5, 0.25, 0.25], [1.0, 1.0, 1.0]]))
    ent = entropy_from_logits(logits)
    assert ent.tolist() == pytest.approx([1.5 * math.log(2), math.log(3)])
    lp = logprobs_from_logits(logits, torch.tensor([1, 2]))
    assert lp.tolist() == pytest.approx([math.log(0.25), -math.log(3)])
    # at temperature 2 the distribution is softmax(logits / 2): [0.5, 0.25, 0.25] -> proportional to [1.41, 1, 1]
    hot = torch.tensor([2**0.5, 1.0, 1.0]) / (2 + 2**0.5)
    assert logprobs_from_logits(logits, torch.tensor([0, 0]), 2.0)[0].item() == pytest.approx(math.log(hot[0]))
    assert entropy_from_logits(logits, 2.0)[0].item() == pytest.approx(-(hot * hot.log()).sum().item())


def plain_logprobs(logits, tokens, temperature):
    """The expression the chunked scoring replaces: fp32 log-softmax of the whole batch, then gather."""
    return F.log_softmax(logits.float() / temperature, dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("chunk_bytes", [1, None], ids=["a-row-a-chunk", "one-chunk"])
def test_chunked_logprobs_and_gradients_equal_the_plain_expression(dtype, chunk_bytes):
    """The log-probs PPO trains on, computed a chunk of rows at a time with their own backward pass: the same
    values (to 1e-6) and gradients (to 1e-6, and within the logits' dtype for bf16) as log_softmax + gather."""
    torch.manual_seed(0)
    base = torch.randn(5, 7, 300) * 3  # 5 rows of 7 positions, vocab 300
    tokens = torch.randint(0, 300, (5, 7))
    weights = torch.randn(5, 7)  # a loss that weighs every token differently
    results = []
    for fn in (logprobs_from_logits, plain_logprobs):
        logits = base.to(dtype).requires_grad_()
        lp = fn(logits, tokens, 0.7, chunk_bytes) if fn is logprobs_from_logits else fn(logits, tokens, 0.7)
        (lp * weights).sum().backward()
        results.append((lp, logits.grad))
    (lp, grad), (ref, ref_grad) = results
    assert lp.dtype == torch.float32 and grad.dtype == dtype and grad.shape == base.shape
    torch.testing.assert_close(lp, ref, atol=1e-6, rtol=1e-6)
    tolerance = dict(atol=1e-6, rtol=1e-6) if dtype == torch.float32 else {}
    torch.testing.assert_close(grad, ref_grad, **tolerance)
    torch.testing.assert_close(entropy_from_logits(base.to(dtype), 0.7, chunk_bytes), entropy_of(base.to(dtype), 0.7))


def entropy_of(logits, temperature):
    logp = F.log_softmax(logits.float() / temperature, dim=-1)
    return -(logp.exp() * logp).sum(-1)


def test_chunked_logprobs_pass_gradcheck():
    torch.manual_seed(0)
    logits = torch.randn(3, 4, 11, dtype=torch.float64, requires_grad=True)
    tokens = torch.randint(0, 11, (3, 4))
    # gradcheck in float64; the function computes in fp32, hence the tolerance
    scores = lambda x: logprobs_from_logits(x, tokens, 0.7, 1).double()  # noqa: E731
    assert torch.autograd.gradcheck(scores, (logits,), eps=1e-3, atol=1e-3)


def saved_bytes(fn) -> int:
    """What autograd keeps for the backward pass while `fn()` runs (the tensors saved, bytes)."""
    seen: dict[int, int] = {}

    def pack(t):
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_scoring_keeps_no_fp32_copy_of_the_logits(dtype):
    """Issue 22: the update keeps the logits it has (in their dtype) and one number per token, not fp32
    copies of the whole mini-batch's logits."""
    logits = torch.randn(4, 16, 1000).to(dtype).requires_grad_()
    tokens = torch.randint(0, 1000, (4, 16))
    kept = saved_bytes(lambda: logprobs_from_logits(logits, tokens, 0.7))
    assert kept <= logits.numel() * logits.element_size() + tokens.numel() * (8 + 4)  # logits, tokens, lse
    assert saved_bytes(lambda: plain_logprobs(logits, tokens, 0.7)) >= logits.numel() * 4  # an fp32 copy at least
