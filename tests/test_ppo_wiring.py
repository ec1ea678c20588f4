"""How the PPO trainer wires its parts, checked with spies on a tiny deterministic task.

Each test recomputes what the trainer must have passed from the rollout it recorded: the scores
(penalised, normalised), the advantages (GAE with gamma != lam, whitened over valid tokens), the KL
fed to the controller, and in the update the mini-batches, log-probs, losses and gradients.
"""

import torch
from transformers import OPTForCausalLM

from kfrlhf.ppo import losses as L
from kfrlhf.ppo import trainer
from kfrlhf.ppo.kl import AdaptiveKLController
from tests.test_ppo_trainer import small_cfg, target_fraction
from tests.word_task import PROMPTS, tiny_config, tiny_tokenizer

CFG = dict(steps=2, ppo_epochs=2, gamma=0.9, lam=0.8, temperature=0.7, missing_eos_penalty=0.5, vf_coef=0.1)


def dropout_lm(tok) -> OPTForCausalLM:
    """A tiny OPT with dropout, handed over in train mode: PPO must switch dropout off itself."""
    torch.manual_seed(0)
    return OPTForCausalLM(tiny_config(tok, dropout=0.1, attention_dropout=0.1)).train()


def test_scores_advantages_and_kl_controller_are_wired(monkeypatch):
    tok = tiny_tokenizer()
    cfg = small_cfg(**CFG)
    raw, scores, rollouts, kl_fed = [], [], [], []

    def reward_fn(prompts, responses):
        raw.append(target_fraction(prompts, responses))
        return raw[-1]

    def kl_rewards(s, *args):
        scores.append(s.clone())
        return kl_penalty_rewards(s, *args)

    def update(cfg_, policy, value_head, optimizer, params, r, advantages, returns):
        rollouts.append((r, advantages.clone(), returns.clone()))
        return ppo_update(cfg_, policy, value_head, optimizer, params, r, advantages, returns)

    kl_penalty_rewards, ppo_update = L.kl_penalty_rewards, trainer.ppo_update
    monkeypatch.setattr(L, "kl_penalty_rewards", kl_rewards)
    monkeypatch.setattr(trainer, "ppo_update", update)
    monkeypatch.setattr(AdaptiveKLController, "update", lambda self, kl, n: kl_fed.append(kl) or self.value)
    trainer.run_ppo(cfg, dropout_lm(tok), tok, PROMPTS, reward_fn)

    seen = []
    for step, (r, advantages, returns) in enumerate(rollouts):
        mask = r.mask
        assert (mask == 0).any(), "the test needs responses that end early"
        assert (r.logprobs * (1 - mask)).abs().max() == 0  # nothing after EOS counts
        # The score: raw - penalty without EOS, normalised by the running moments of all scores so far.
        has_eos = ((r.response_ids == tok.eos_token_id) & mask.bool()).any(1)
        seen.append(torch.where(has_eos, raw[step], raw[step] - cfg.missing_eos_penalty).double())
        everything = torch.cat(seen)
        expected = (seen[-1] - everything.mean()) / everything.std(unbiased=False)
        torch.testing.assert_close(scores[step], expected.float())
        # Advantages: GAE(gamma, lam) of the KL-penalised rewards, whitened over valid tokens only.
        rewards, _ = kl_penalty_rewards(scores[step], r.logprobs, r.ref_logprobs, mask, cfg.init_kl_coef)
        adv, ret = L.gae(rewards, r.values, mask, gamma=0.9, lam=0.8)
        torch.testing.assert_close(returns, ret)
        torch.testing.assert_close(advantages, L.masked_whiten(adv, mask))
        assert abs(L.masked_mean(advantages, mask).item()) < 1e-5 and (advantages * (1 - mask)).abs().max() == 0
        # The controller sees the per-sequence KL (summed over tokens), averaged over the batch.
        assert kl_fed[step] == ((r.logprobs - r.ref_logprobs) * mask).sum(1).mean().item()


def test_update_wiring(monkeypatch):
    tok = tiny_tokenizer()
    cfg = small_cfg(**CFG, lora_dropout=0.5)
    n_mini = cfg.batch_size // cfg.mini_batch_size
    log = {"update": [], "forward": [], "temperature": [], "pg": [], "vf": [], "clip": []}
    heads = []

    def make_policy(cfg_, model):
        heads.append(make_policy_(cfg_, model))
        return heads[-1]

    def update(cfg_, policy, value_head, optimizer, params, r, advantages, returns):
        log["update"].append((r, advantages, returns))
        return ppo_update(cfg_, policy, value_head, optimizer, params, r, advantages, returns)

    def fwd(model, value_head, input_ids, *args):
        r = log["update"][-1][0]
        rows = [next(j for j, row in enumerate(r.input_ids) if torch.equal(row, ids)) for ids in input_ids]
        log["forward"].append((model.training, rows))
        return forward(model, value_head, input_ids, *args)

    def logprobs(logits, tokens, temperature):
        log["temperature"].append(temperature)
        return logprobs_(logits, tokens, temperature)

    def policy_loss(logprobs, old, advantages, mask, cliprange):
        log["pg"].append((logprobs.detach().clone(), old, advantages, mask, cliprange))
        return policy_loss_(logprobs, old, advantages, mask, cliprange)

    def value_loss(values, old, returns, mask, cliprange_value):
        loss, clipfrac = value_loss_(values, old, returns, mask, cliprange_value)
        head = heads[-1][1]
        grad = torch.autograd.grad(loss, head.weight, retain_graph=True)[0]
        log["vf"].append((old, returns, mask, cliprange_value, grad))
        return loss, clipfrac

    def clip(params, max_norm, *args, **kw):
        params = list(params)
        head = heads[-1][1]
        log["clip"].append(
            [max_norm, head.weight.grad.clone(), len(params), torch.norm(torch.stack([p.grad.norm() for p in params]))]
        )
        clip_(params, max_norm, *args, **kw)
        log["clip"][-1].append(torch.norm(torch.stack([p.grad.norm() for p in params])))

    make_policy_, ppo_update, forward = trainer.make_policy, trainer.ppo_update, trainer.forward
    logprobs_ = trainer.logprobs_from_logits
    policy_loss_, value_loss_, clip_ = L.policy_loss, L.value_loss, torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(trainer, "make_policy", make_policy)
    monkeypatch.setattr(trainer, "ppo_update", update)
    monkeypatch.setattr(trainer, "forward", fwd)
    monkeypatch.setattr(trainer, "logprobs_from_logits", logprobs)
    monkeypatch.setattr(L, "policy_loss", policy_loss)
    monkeypatch.setattr(L, "value_loss", value_loss)
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", clip)
    trainer.run_ppo(cfg, dropout_lm(tok), tok, PROMPTS, target_fraction)

    per_step = cfg.ppo_epochs * n_mini
    assert len(log["forward"]) == len(log["pg"]) == len(log["vf"]) == len(log["clip"]) == cfg.steps * per_step
    # Dropout off and the sampling temperature in every update forward pass.
    assert not any(training for training, _ in log["forward"])
    assert log["temperature"] == [cfg.temperature] * len(log["forward"])
    n_params = sum(p.requires_grad for p in heads[-1][0].parameters()) + 2
    for step, (r, advantages, returns) in enumerate(log["update"]):
        calls = range(step * per_step, (step + 1) * per_step)
        orders = [sum((log["forward"][i][1] for i in calls[e * n_mini : (e + 1) * n_mini]), []) for e in range(2)]
        assert all(sorted(o) == list(range(cfg.batch_size)) for o in orders)  # every epoch sees every row once
        assert orders[0] != orders[1] and orders[0] != list(range(cfg.batch_size))  # shuffled each epoch
        for k, i in enumerate(calls):
            idx = log["forward"][i][1]
            assert len(idx) == cfg.mini_batch_size
            logprobs, old, adv, mask, cliprange = log["pg"][i]
            torch.testing.assert_close(old, r.logprobs[idx])  # old log-probs from the rollout
            torch.testing.assert_close(adv, advantages[idx])
            torch.testing.assert_close(mask, r.mask[idx])
            assert cliprange == cfg.cliprange
            if k == 0:  # before any update: ratio 1 exactly (dropout off, same temperature and positions)
                assert torch.equal(logprobs * mask, old)
            else:
                assert (logprobs * mask - old).abs().max() > 0  # the ratio moves
            old_v, ret, _, cliprange_value, vf_grad = log["vf"][i]
            torch.testing.assert_close(old_v, r.values[idx])
            torch.testing.assert_close(ret, returns[idx])
            assert cliprange_value == cfg.cliprange_value
            max_norm, head_grad, n, before, after = log["clip"][i]
            # The value head's gradient comes from vf_coef * value loss only.
            torch.testing.assert_close(head_grad, cfg.vf_coef * vf_grad)
            assert max_norm == trainer.MAX_GRAD_NORM and n == n_params
            assert after <= max_norm * (1 + 1e-5) and (before <= max_norm or after < before)
    assert any(c[3] > trainer.MAX_GRAD_NORM for c in log["clip"]), "the test needs gradients that get clipped"
