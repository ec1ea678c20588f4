"""The PPO building blocks against values computed by hand."""

import pytest
import torch

from kfrlhf.ppo import losses as L
from kfrlhf.ppo.config import PPOConfig
from kfrlhf.ppo.kl import AdaptiveKLController, FixedKLController


def close(actual: torch.Tensor, expected: list) -> None:
    torch.testing.assert_close(actual, torch.tensor(expected))


def test_masked_mean_and_whiten():
    x = torch.tensor([[1.0, 2.0, 3.0, 100.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    assert L.masked_mean(x, mask).item() == pytest.approx(2.0)
    assert L.masked_var(x, mask).item() == pytest.approx(1.0)  # unbiased: ((-1)^2 + 0 + 1^2) / 2
    w = L.masked_whiten(x, mask)
    assert w.tolist()[0] == pytest.approx([-1.0, 0.0, 1.0, 0.0], abs=1e-6)
    rows = L.masked_mean(torch.tensor([[1.0, 3.0], [5.0, 7.0]]), torch.tensor([[1.0, 1.0], [1.0, 0.0]]), dim=1)
    assert rows.tolist() == [2.0, 5.0]


def test_kl_penalty_rewards_put_score_on_last_real_token():
    logp = torch.tensor([[-1.0, -1.0, -1.0], [-2.0, -2.0, -2.0]])
    ref = torch.tensor([[-1.5, -0.5, -1.0], [-1.0, -2.0, -9.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    rewards, kl = L.kl_penalty_rewards(torch.tensor([10.0, 20.0]), logp, ref, mask, kl_coef=0.1)
    close(kl, [[0.5, -0.5, 0.0], [-1.0, 0.0, 0.0]])
    close(rewards, [[-0.05, 0.05, 10.0], [0.1, 20.0, 0.0]])


def test_gae_gamma1_lam1_is_reward_to_go_minus_values():
    rewards = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 0.0]])
    values = torch.tensor([[0.5, 0.5, 0.5], [1.0, 2.0, 7.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    adv, ret = L.gae(rewards, values, mask, gamma=1.0, lam=1.0)
    close(adv, [[5.5, 4.5, 2.5], [8.0, 3.0, 0.0]])
    close(ret, [[6.0, 5.0, 3.0], [9.0, 5.0, 0.0]])


def test_gae_lam0_is_one_step_td():
    rewards = torch.tensor([[1.0, 2.0]])
    values = torch.tensor([[0.5, 1.5]])
    adv, _ = L.gae(rewards, values, torch.ones(1, 2), gamma=0.9, lam=0.0)
    # delta_0 = 1 + 0.9 * 1.5 - 0.5; delta_1 = 2 + 0 - 1.5 (terminal)
    assert adv.tolist()[0] == pytest.approx([1.85, 0.5])


def test_policy_loss_clips_the_ratio():
    old = torch.zeros(1, 3)
    new = torch.log(torch.tensor([[1.5, 1.5, 0.5]]))  # ratios 1.5, 1.5, 0.5
    adv = torch.tensor([[1.0, -1.0, 1.0]])
    loss, clipfrac, approx_kl = L.policy_loss(new, old, adv, torch.ones(1, 3), cliprange=0.2)
    # token 0: A>0, ratio clipped to 1.2 -> -1.2; token 1: A<0, max(1.5, 1.2) -> 1.5;
    # token 2: A>0, max(-0.5, -0.8) -> -0.5 (pessimistic, unclipped)
    assert loss.item() == pytest.approx((-1.2 + 1.5 - 0.5) / 3)
    assert clipfrac.item() == pytest.approx(1 / 3)
    lr = new[0]
    assert approx_kl.item() == pytest.approx(float((0.5 * lr**2).mean()))


def test_policy_loss_mask_ignores_padding():
    loss, _, _ = L.policy_loss(
        torch.zeros(1, 2), torch.zeros(1, 2), torch.tensor([[2.0, 99.0]]), torch.tensor([[1.0, 0.0]]), 0.2
    )
    assert loss.item() == pytest.approx(-2.0)


def test_value_loss_clips_the_update():
    old = torch.tensor([[0.0, 0.0]])
    new = torch.tensor([[1.0, 0.1]])
    ret = torch.tensor([[0.0, 1.0]])
    loss, clipfrac = L.value_loss(new, old, ret, torch.ones(1, 2), cliprange_value=0.2)
    # token 0: max(1^2, 0.2^2) = 1; token 1: max(0.9^2, 0.9^2) = 0.81 (within the clip range)
    assert loss.item() == pytest.approx(0.5 * (1.0 + 0.81) / 2)
    assert clipfrac.item() == 0.0
    # moving away from the return beyond the range: the clipped term is the larger one
    loss, clipfrac = L.value_loss(
        torch.tensor([[-1.0]]), torch.tensor([[0.5]]), torch.tensor([[1.0]]), torch.ones(1, 1), 0.2
    )
    assert loss.item() == pytest.approx(0.5 * 4.0)
    assert clipfrac.item() == 0.0
    # a step towards the return beyond the clip range: the clipped value 0.2 sets the loss
    loss, clipfrac = L.value_loss(
        torch.tensor([[0.9]]), torch.tensor([[0.0]]), torch.tensor([[1.0]]), torch.ones(1, 1), 0.2
    )
    assert loss.item() == pytest.approx(0.5 * 0.8**2)
    assert clipfrac.item() == 1.0


def test_adaptive_kl_controller_moves_towards_target():
    up = AdaptiveKLController(0.2, target=1.0, horizon=100)
    assert up.update(current_kl=2.0, n_steps=10) == pytest.approx(0.2 * (1 + 0.2 * 10 / 100))  # error clipped to 0.2
    down = AdaptiveKLController(0.2, target=1.0, horizon=100)
    assert down.update(current_kl=0.9, n_steps=10) == pytest.approx(0.2 * (1 - 0.1 * 10 / 100))
    assert down.update(current_kl=0.0, n_steps=10) < 0.2 * (1 - 0.1 * 10 / 100)
    assert FixedKLController(0.3).update(100.0, 10) == 0.3


def test_gae_with_gamma_and_lambda_apart():
    rewards = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 9.0]])
    values = torch.tensor([[0.5, 1.0, 1.5], [1.0, 2.0, 7.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    adv, ret = L.gae(rewards, values, mask, gamma=0.9, lam=0.8)
    # row 0: deltas 1 + 0.9 * 1 - 0.5 = 1.4, 2 + 0.9 * 1.5 - 1 = 2.35, 3 - 1.5 = 1.5; A_t = delta_t + 0.72 A_t+1
    # row 1 ends after two tokens: deltas 4 + 0.9 * 2 - 1 = 4.8, 5 - 2 = 3
    close(adv, [[1.4 + 0.72 * 3.43, 2.35 + 0.72 * 1.5, 1.5], [4.8 + 0.72 * 3.0, 3.0, 0.0]])
    close(ret, [[1.4 + 0.72 * 3.43 + 0.5, 3.43 + 1.0, 3.0], [6.96 + 1.0, 5.0, 0.0]])


def test_default_kl_horizon_lets_the_controller_act_within_a_run():
    cfg = PPOConfig()
    assert cfg.horizon == cfg.steps * cfg.batch_size // 5
    for kl, bound in (
        (2 * cfg.target_kl, lambda v: v > 2.5 * cfg.init_kl_coef),
        (0.0, lambda v: v < 0.4 * cfg.init_kl_coef),
    ):
        ctl = AdaptiveKLController(cfg.init_kl_coef, cfg.target_kl, cfg.horizon)
        for _ in range(cfg.steps):
            ctl.update(kl, cfg.batch_size)
        assert bound(ctl.value), ctl.value
