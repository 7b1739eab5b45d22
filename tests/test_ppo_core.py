"""PPO's pieces against numbers worked out by hand (studio/methods/ppo_core.py); the value
head on a real model is tested in test_ppo_train.py (it needs transformers)."""
from __future__ import annotations

import pytest
import torch

from studio.methods.ppo_core import (
    completion_mask, gae, lr_factor, masked_whiten, policy_loss, shape_rewards, value_loss,
)

approx = lambda xs: pytest.approx(xs, abs=1e-5)  # noqa: E731


def test_gae_matches_hand_computation_and_ignores_padding():
    # Three real tokens, then one pad whose reward/value are garbage and must not count.
    # gamma = 0.9, lambda = 0.8, so gamma*lambda = 0.72. Rewards r = [0, 0, 1], values V = [0.5, 0.4, 0.6].
    #   t=2 (last): delta = 1 + 0.9*0   - 0.6 =  0.4     A2 = 0.4
    #   t=1:        delta = 0 + 0.9*0.6 - 0.4 =  0.14    A1 = 0.14 + 0.72*0.4   = 0.428
    #   t=0:        delta = 0 + 0.9*0.4 - 0.5 = -0.14    A0 = -0.14 + 0.72*0.428 = 0.16816
    # returns = A + V = [0.66816, 0.828, 1.0], and 0 on the pad.
    rewards = torch.tensor([[0.0, 0.0, 1.0, 5.0]])
    values = torch.tensor([[0.5, 0.4, 0.6, 0.7]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    adv, ret = gae(rewards, values, mask, gamma=0.9, lam=0.8)
    assert adv[0].tolist() == approx([0.16816, 0.428, 0.4, 0.0])
    assert ret[0].tolist() == approx([0.66816, 0.828, 1.0, 0.0])


def test_gae_rows_are_independent_and_gamma_one_lambda_one_is_reward_to_go_minus_value():
    # With gamma = lambda = 1 the advantage is (sum of rewards from t on) - V_t.
    rewards = torch.tensor([[1.0, 2.0, 3.0], [0.0, 4.0, 0.0]])
    values = torch.tensor([[1.0, 1.0, 1.0], [2.0, 2.0, 9.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    adv, _ = gae(rewards, values, mask, gamma=1.0, lam=1.0)
    assert adv[0].tolist() == approx([6 - 1, 5 - 1, 3 - 1])
    assert adv[1].tolist() == approx([4 - 2, 4 - 2, 0.0])


def test_completion_mask_keeps_the_first_eos_and_drops_what_follows():
    eos, pad = 2, 0
    ids = torch.tensor([[5, 6, eos, pad, pad],   # eos at 2: mask through 2
                        [eos, eos, eos, eos, eos],  # stopped at once (pad == eos tokenizers)
                        [5, 6, 7, 8, 9]])        # ran out of tokens: all real
    assert completion_mask(ids, eos).tolist() == [[1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 1, 1]]
    # several eos ids (generation_config lists more than one)
    assert completion_mask(torch.tensor([[5, 7, 6, 2]]), [2, 7]).tolist() == [[1, 1, 0, 0]]


def test_whitening_uses_real_tokens_only():
    # Real values 1, 2, 3: mean 2, unbiased variance ((1)^2 + 0 + (1)^2) / 2 = 1 -> [-1, 0, 1].
    x = torch.tensor([[1.0, 2.0, 100.0], [3.0, -50.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    assert masked_whiten(x, mask).tolist() == [approx([-1.0, 0.0, 0.0]), approx([1.0, 0.0, 0.0])]


def test_clipped_policy_loss_and_clip_fraction():
    # clip_range 0.2 -> the ratio is clipped to [0.8, 1.2]; per token max(-A r, -A clip(r)):
    #   r=1.5, A=+1: max(-1.5, -1.2) = -1.2   clipped term chosen (no extra credit past 1.2)
    #   r=0.5, A=+1: max(-0.5, -0.8) = -0.5   unclipped (pessimistic: the loss still sees the drop)
    #   r=1.1, A=-1: max( 1.1,  1.1) =  1.1   inside the range
    #   r=0.7, A=-1: max( 0.7,  0.8) =  0.8   clipped term chosen
    #   r=1.5, A=-1: max( 1.5,  1.2) =  1.5   unclipped
    #   (a sixth, masked token with a huge ratio must not count)
    # loss = (-1.2 - 0.5 + 1.1 + 0.8 + 1.5) / 5 = 0.34; clip fraction = 2 / 5 = 0.4
    ratios = torch.tensor([[1.5, 0.5, 1.1, 0.7, 1.5, 50.0]])
    adv = torch.tensor([[1.0, 1.0, -1.0, -1.0, -1.0, 1.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 1.0, 1.0, 0.0]])
    old = torch.full_like(ratios, -2.0)
    new = (old + ratios.log()).requires_grad_(True)
    loss, clip_fraction, approx_kl = policy_loss(new, old, adv, mask, clip_range=0.2)
    assert loss.item() == pytest.approx(0.34, abs=1e-5)
    assert float(clip_fraction) == pytest.approx(0.4)
    # k3 estimate: mean of (r - 1) - log r over the 5 real tokens
    k3 = sum((r - 1) - torch.tensor(r).log().item() for r in [1.5, 0.5, 1.1, 0.7, 1.5]) / 5
    assert float(approx_kl) == pytest.approx(k3, abs=1e-5)
    # Gradient flows only through unclipped tokens: d/dlogp (-A r) = -A r; divided by 5 tokens.
    loss.backward()
    assert new.grad[0].tolist() == approx([0.0, -0.5 / 5, 1.1 / 5, 0.0, 1.5 / 5, 0.0])


def test_clipped_value_loss():
    # clip 0.2 around the rollout's values; 0.5 * mean of max(unclipped^2, clipped^2):
    #   old 0.0, new 0.5, R 1.0: clipped value 0.2 -> max(0.25, 0.64) = 0.64 (clipped chosen)
    #   old 0.0, new 0.1, R 0.0: within range        -> 0.01
    #   old 1.0, new 0.7, R 0.0: clipped value 0.8  -> max(0.49, 0.64) = 0.64 (clipped chosen)
    # loss = 0.5 * (0.64 + 0.01 + 0.64) / 3 = 0.215; clip fraction 2/3
    new = torch.tensor([[0.5, 0.1, 0.7, 3.0]])
    old = torch.tensor([[0.0, 0.0, 1.0, 0.0]])
    ret = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    loss, clip_fraction = value_loss(new, old, ret, mask, clip_range=0.2)
    assert float(loss) == pytest.approx(0.215, abs=1e-6)
    assert float(clip_fraction) == pytest.approx(2 / 3)


def test_kl_reward_shaping_puts_the_score_on_the_last_real_token():
    # logp - ref = [0.5, 0, 0.5, (pad)]; kl_coef 0.1 -> [-0.05, 0, -0.05]; score 2 lands on t=2.
    logp = torch.tensor([[-1.0, -2.0, -0.5, -9.0], [-1.0, -1.0, -1.0, -1.0]])
    ref = torch.tensor([[-1.5, -2.0, -1.0, -1.0], [-1.0, -1.0, -1.0, -1.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    rewards, kl = shape_rewards(torch.tensor([2.0, -1.0]), logp, ref, mask, kl_coef=0.1)
    assert rewards[0].tolist() == approx([-0.05, 0.0, 1.95, 0.0])
    assert rewards[1].tolist() == approx([-1.0, 0.0, 0.0, 0.0])  # one-token completion
    assert kl.sum(1).tolist() == approx([1.0, 0.0])


def test_learning_rate_schedule():
    assert lr_factor(0, 10, 0, "none") == 1.0
    assert [lr_factor(s, 10, 2, "linear") for s in (0, 1, 2)] == approx([1 / 3, 2 / 3, 1.0])
    assert lr_factor(6, 10, 2, "cosine") == pytest.approx(0.5)  # halfway through the decay
