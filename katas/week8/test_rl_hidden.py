"""Hidden tests for week8/rl: fresh seeded inputs, expected values from the reference."""

import pytest
import torch

from graders import check, reference, student
from graders.testing import randn

pytestmark = pytest.mark.hidden

rl = student("week8.rl")
model = reference("week8.rl")


@pytest.mark.points(1)
def test_reward_model_loss_on_fresh_rewards():
    c, r = randn(32, seed=61, scale=3, draw_dtype=torch.float32), randn(32, seed=62, scale=3, draw_dtype=torch.float32)
    check.close(rl.reward_model_loss(c, r), model.reward_model_loss(c, r))


@pytest.mark.points(3)
@pytest.mark.parametrize("seed,gamma,lam", [(71, 0.99, 0.95), (72, 0.8, 0.7), (73, 1.0, 0.9)])
def test_gae_on_fresh_trajectories(seed, gamma, lam):
    T = 20
    rewards = randn(T, seed=seed, draw_dtype=torch.float32)
    values = randn(T + 1, seed=seed + 1, scale=2, draw_dtype=torch.float32)
    dones = (torch.rand(T, generator=torch.Generator().manual_seed(seed + 2)) < 0.2).float()
    dones[-1] = 0.0  # cut, not ended: the last step bootstraps from values[T]
    adv, ret = rl.compute_gae(rewards, values, dones, gamma, lam)
    want = model.compute_gae(rewards, values, dones, gamma, lam)  # (advantages, returns)
    check.close(adv, want[0], hint="gae_not_cut", what="advantages")
    check.close(ret, want[1], hint="wrong_bootstrap", what="returns")


@pytest.mark.points(2)
@pytest.mark.parametrize("seed", [81, 82])
def test_ppo_losses_on_fresh_batches(seed):
    B, T = 5, 8
    logprobs = -randn(B, T, seed=seed, draw_dtype=torch.float32).abs()
    old = logprobs + randn(B, T, seed=seed + 1, scale=0.5, draw_dtype=torch.float32)
    adv = randn(B, T, seed=seed + 2, draw_dtype=torch.float32)
    mask = torch.ones(B, T)
    for b in range(B):
        mask[b, T - b:] = 0
    check.close(rl.ppo_policy_loss(logprobs, old, adv, mask, clip_eps=0.15),
                model.ppo_policy_loss(logprobs, old, adv, mask, clip_eps=0.15), hint="max_not_min")
    values = randn(B, T, seed=seed + 3, draw_dtype=torch.float32)
    old_values = randn(B, T, seed=seed + 4, draw_dtype=torch.float32)
    returns = randn(B, T, seed=seed + 5, draw_dtype=torch.float32)
    check.close(rl.ppo_value_loss(values, old_values, returns, mask, clip=0.1),
                model.ppo_value_loss(values, old_values, returns, mask, clip=0.1), hint="mean_over_padding")


@pytest.mark.points(1)
def test_kl_estimators_on_fresh_logprobs():
    a, b = -randn(4, 6, seed=91, draw_dtype=torch.float32).abs(), -randn(4, 6, seed=92, draw_dtype=torch.float32).abs()
    for kind in ("k1", "k2", "k3"):
        check.close(rl.kl_penalty(a, b, kind=kind), model.kl_penalty(a, b, kind=kind), hint="kl_sign", what=kind)


@pytest.mark.points(3)
@pytest.mark.parametrize("seed", [101, 102])
def test_grpo_on_fresh_groups(seed):
    rewards = (randn(6, 4, seed=seed, draw_dtype=torch.float32)
               * randn(6, 1, seed=seed + 1, draw_dtype=torch.float32).abs() * 4
               + randn(6, 1, seed=seed + 2, draw_dtype=torch.float32) * 3)
    check.close(rl.grpo_advantages(rewards), model.grpo_advantages(rewards), hint="group_norm_whole_batch")
    B, T = 6, 9
    logprobs = -randn(B, T, seed=seed + 3, draw_dtype=torch.float32).abs()
    old = logprobs + randn(B, T, seed=seed + 4, scale=0.4, draw_dtype=torch.float32)
    ref = logprobs + randn(B, T, seed=seed + 5, scale=0.2, draw_dtype=torch.float32)
    mask = torch.ones(B, T)
    for b in range(B):
        mask[b, 2 + b:] = 0
    adv = randn(B, seed=seed + 6, draw_dtype=torch.float32)
    check.close(rl.grpo_loss(logprobs, old, ref, adv, mask, clip_eps=0.25, beta=0.1),
                model.grpo_loss(logprobs, old, ref, adv, mask, clip_eps=0.25, beta=0.1), hint="mean_over_padding")


@pytest.mark.points(1)
def test_defaults_of_the_clipped_losses():
    """Without them, ppo_policy_loss clips at clip_eps=0.2, ppo_value_loss at clip=0.2, and grpo_loss
    uses clip_eps=0.2 and beta=0.04 (the signatures' defaults). The ratios and value changes are
    large enough that every clip is active, and the KL term moves grpo_loss by about 1%."""
    B, T = 4, 7
    mask = torch.ones(B, T)
    mask[1:, -2:] = 0
    logprobs = -randn(B, T, seed=121, draw_dtype=torch.float32).abs()
    old = logprobs + randn(B, T, seed=122, scale=0.6, draw_dtype=torch.float32)
    adv = randn(B, T, seed=123, draw_dtype=torch.float32)
    check.close(rl.ppo_policy_loss(logprobs, old, adv, mask),
                model.ppo_policy_loss(logprobs, old, adv, mask, clip_eps=0.2), hint="default_arguments",
                what="ppo_policy_loss without clip_eps")
    values, old_values, returns = (randn(B, T, seed=s, draw_dtype=torch.float32) for s in (124, 125, 126))
    check.close(rl.ppo_value_loss(values, old_values, returns, mask),
                model.ppo_value_loss(values, old_values, returns, mask, clip=0.2), hint="default_arguments",
                what="ppo_value_loss without clip")
    ref = logprobs + randn(B, T, seed=127, scale=0.3, draw_dtype=torch.float32)
    group_adv = randn(B, seed=128, draw_dtype=torch.float32)
    check.close(rl.grpo_loss(logprobs, old, ref, group_adv, mask),
                model.grpo_loss(logprobs, old, ref, group_adv, mask, clip_eps=0.2, beta=0.04), hint="default_arguments",
                what="grpo_loss without clip_eps and beta")
