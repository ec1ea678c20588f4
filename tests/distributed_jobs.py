"""What tests/test_distributed.py runs on 2 gloo processes through `kfrlhf.launch.launcher.run_stage`
(the same `accelerate launch` path as on GPUs): every stage's entry point in one launch (a launch
costs a minute of start-up on 2 loaded cores), and a probe of PPO's all-reduced statistics.

Each rank's share of the probe data is the rows `rank::world` of one seeded set, so one process
computing on the whole set must find the same numbers.
"""

from __future__ import annotations

import torch

from kfrlhf.common import distributed
from kfrlhf.common.sampling import generate
from kfrlhf.launch.launcher import call
from kfrlhf.ppo.config import PPOConfig
from kfrlhf.ppo.normalization import RunningMoments
from kfrlhf.ppo.rollout import score
from kfrlhf.ppo.trainer import divergence, global_mean_kl, make_policy, ppo_update, whiten
from tests.word_task import PROMPTS, tiny_lm, tiny_tokenizer

PROBE_ROWS = 8


def run_all(launch: dict, stages: dict[str, list]) -> dict:
    """`stages`: name -> [target, kwargs], run in order; each stage's result, and the probe's.
    (`launch` holds the `distributed` section that started this job.)"""
    results = {name: call(target, kwargs) for name, (target, kwargs) in stages.items()}
    return {**results, "probe": probe()}


def share(x: torch.Tensor) -> torch.Tensor:
    """This rank's rows of `x` (all of them in one process)."""
    return x[distributed.rank() :: distributed.world_size()]


def probe_data() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    mask = (torch.rand(PROBE_ROWS, 6, generator=g) > 0.3).float()
    mask[:, 0] = 1
    return {
        "scores": torch.randn(PROBE_ROWS, generator=g) * 3 + 1,
        "advantages": torch.randn(PROBE_ROWS, 6, generator=g),
        "kl": torch.rand(PROBE_ROWS, 6, generator=g),
        "mask": mask,
    }


def probe_cfg() -> PPOConfig:
    return PPOConfig(
        batch_size=PROBE_ROWS, mini_batch_size=PROBE_ROWS, ppo_epochs=1, learning_rate=1e-2, lora_r=4, seed=3
    )


def probe() -> dict:
    """PPO's all-reduced statistics and one update on this rank's share of a fixed rollout."""
    data = {k: share(v) for k, v in probe_data().items()}
    moments = RunningMoments()
    moments.update(data["scores"])
    moments.update(data["scores"] * 2)
    whitened = whiten(data["advantages"], data["mask"])
    stats = {
        "moments": [moments.mean, moments.var, moments.count],
        "mean_kl": global_mean_kl((data["kl"] * data["mask"]).sum(1)),
        "divergence": divergence(PPOConfig(reward_limit=0.5), data["scores"], 0.1),
        "whitened_rows": torch.cat(distributed.gather_objects(whitened)).tolist(),
    }
    return {**stats, "update": one_update()}


def one_update() -> dict:
    """One PPO update (one epoch, one mini-batch of all rows, plain SGD) on this rank's rows of a seeded rollout."""
    cfg = probe_cfg()
    tok = tiny_tokenizer()
    tok.padding_side = "left"
    torch.manual_seed(cfg.seed)
    policy, value_head = make_policy(cfg, tiny_lm(tok))
    torch.manual_seed(11)  # the same rollout on every rank
    r = generate(policy, tok, (PROMPTS * 2)[:PROBE_ROWS], 5, cfg)
    score(policy, value_head, r, cfg.temperature, PROBE_ROWS)
    advantages = torch.randn(r.mask.shape, generator=torch.Generator().manual_seed(5)) * r.mask
    returns = r.values + advantages
    for name in ("input_ids", "attention_mask", "response_ids", "mask", "logprobs", "values", "ref_logprobs"):
        setattr(r, name, share(getattr(r, name)))
    advantages, returns = share(advantages), share(returns)
    params = [p for p in policy.parameters() if p.requires_grad] + list(value_head.parameters())
    # SGD, not AdamW: Adam's first step turns every gradient element into +-lr, so float noise in a
    # near-zero element flips it; what is compared here is the averaged gradient.
    optimizer = torch.optim.SGD(params, lr=cfg.learning_rate)
    start = torch.cat([p.detach().reshape(-1) for p in params])
    ppo_update(cfg, policy, value_head, optimizer, params, r, advantages, returns)
    weights = torch.cat([p.detach().reshape(-1) for p in params])
    ranks = distributed.gather_objects(weights)
    return {
        "start": start.tolist(),
        "weights": weights.tolist(),
        "ranks_agree": all(torch.equal(w, ranks[0]) for w in ranks),
    }
