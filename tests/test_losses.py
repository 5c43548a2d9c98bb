"""Losses against hand-worked numbers, and their gradients against the estimator they stand for."""

import pytest
import torch

from pgrad.losses import (
    actor_critic_loss,
    approx_kl,
    clip_fraction,
    clipped_surrogate_loss,
    entropy_bonus,
    explained_variance,
    policy_gradient_loss,
    value_loss,
)


def test_policy_gradient_loss_value_and_gradient():
    theta = torch.tensor([0.3, -0.2], requires_grad=True)
    log_probs = torch.stack([theta[0] * 2.0, theta[1] * -1.0])  # d log_prob / d theta known
    advantages = torch.tensor([1.5, -4.0])
    loss = policy_gradient_loss(log_probs, advantages)
    # -(0.6 * 1.5 + 0.2 * -4.0) / 2 = -(0.9 - 0.8) / 2 = -0.05
    assert loss.item() == pytest.approx(-0.05)
    loss.backward()
    # grad = -mean_t[ grad log pi_t * A_t ] = -[2 * 1.5, -1 * -4] / 2
    assert theta.grad.tolist() == pytest.approx([-1.5, -2.0])


def test_policy_gradient_loss_does_not_train_the_critic_through_the_advantage():
    w = torch.tensor(2.0, requires_grad=True)  # a critic weight inside Psi_t = G - V
    log_probs = torch.tensor([-0.5, -1.0], requires_grad=True)
    advantages = torch.tensor([3.0, 1.0]) - w * torch.tensor([1.0, 1.0])
    policy_gradient_loss(log_probs, advantages).backward()
    assert w.grad is None or w.grad.item() == 0.0
    assert log_probs.grad.tolist() == pytest.approx([-0.5, 0.5])


def test_value_loss_hand_worked():
    values = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    targets = torch.tensor([0.0, 2.0, 5.0], requires_grad=True)
    loss = value_loss(values, targets)
    assert loss.item() == pytest.approx((1 + 0 + 4) / 3)
    loss.backward()
    assert values.grad.tolist() == pytest.approx([2 * 1 / 3, 0.0, 2 * -2 / 3])
    assert targets.grad is None  # targets are detached


def test_clipped_value_loss_hand_worked():
    old = torch.tensor([1.0, 1.0, 1.0])
    values = torch.tensor([1.5, 0.0, 1.1])
    targets = torch.tensor([3.0, 3.0, 0.0])
    # eps = 0.2: clipped values 1.2, 0.8, 1.1.
    # unclipped errors^2: 2.25, 9, 1.21; clipped: 3.24, 4.84, 1.21; max: 3.24, 9, 1.21.
    loss = value_loss(values, targets, old_values=old, clip_range=0.2)
    assert loss.item() == pytest.approx((3.24 + 9.0 + 1.21) / 3)
    with pytest.raises(ValueError, match="old_values"):
        value_loss(values, targets, clip_range=0.2)


def test_entropy_bonus_is_the_mean_entropy():
    probs = torch.tensor([[0.5, 0.5], [1.0, 0.0]])
    entropy = torch.distributions.Categorical(probs=probs).entropy()
    assert entropy_bonus(entropy).item() == pytest.approx(torch.log(torch.tensor(2.0)).item() / 2)


def test_clipped_surrogate_loss_hand_worked():
    # ratios 1.5, 0.5, 1.1, 0.7 with eps = 0.2 and advantages +2, +1, -1, -3:
    # t0: min(1.5*2, 1.2*2) = 2.4 (clipped: no incentive above 1 + eps)
    # t1: min(0.5*1, 0.8*1) = 0.5 (unclipped: the pessimistic side)
    # t2: min(1.1*-1, 1.1*-1) = -1.1 (inside the range)
    # t3: min(0.7*-3, 0.8*-3) = -2.4 (clipped on the pessimistic side for negative A)
    old = torch.zeros(4)
    ratios = torch.tensor([1.5, 0.5, 1.1, 0.7])
    log_probs = ratios.log().requires_grad_()
    advantages = torch.tensor([2.0, 1.0, -1.0, -3.0])
    loss = clipped_surrogate_loss(log_probs, old, advantages, clip_range=0.2)
    assert loss.item() == pytest.approx(-(2.4 + 0.5 - 1.1 - 2.4) / 4)
    loss.backward()
    # Gradient flows only where the unclipped term is the minimum: d(rho A)/d log pi = rho A.
    assert log_probs.grad.tolist() == pytest.approx([0.0, -0.5 / 4, 1.1 / 4, 0.0])


def test_clipped_surrogate_equals_the_policy_gradient_loss_at_ratio_one():
    log_probs = torch.tensor([-0.3, -1.2, -0.7], requires_grad=True)
    advantages = torch.tensor([1.0, -2.0, 0.5])
    clipped = clipped_surrogate_loss(log_probs, log_probs.detach(), advantages, 0.2)
    (g1,) = torch.autograd.grad(clipped, log_probs)
    (g2,) = torch.autograd.grad(policy_gradient_loss(log_probs, advantages), log_probs)
    assert g1.tolist() == pytest.approx(g2.tolist())


def test_approx_kl_is_nonnegative_and_estimates_the_exact_kl():
    torch.manual_seed(0)
    old = torch.distributions.Categorical(logits=torch.tensor([0.5, -0.2, 0.1]))
    new = torch.distributions.Categorical(logits=torch.tensor([0.1, 0.3, -0.4]))
    actions = old.sample((200_000,))
    estimate = approx_kl(new.log_prob(actions) - old.log_prob(actions))
    exact = torch.distributions.kl_divergence(old, new)
    assert estimate.item() == pytest.approx(exact.item(), rel=0.03)
    per_sample = approx_kl(new.log_prob(actions[:50, None]) - old.log_prob(actions[:50, None]))
    assert per_sample >= 0


def test_explained_variance_hand_worked():
    targets = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert explained_variance(targets, targets) == pytest.approx(1.0)
    assert explained_variance(torch.full((4,), 2.5), targets) == pytest.approx(0.0)
    # residuals 1, -1, 1, -1: var 4/3; var(targets) = 5/3 -> 1 - 4/5 = 0.2
    assert explained_variance(
        targets - torch.tensor([1.0, -1.0, 1.0, -1.0]), targets
    ) == pytest.approx(0.2)


def test_clipped_value_loss_passes_no_gradient_into_the_old_values():
    values = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    old_values = torch.tensor([0.0, 2.1, 2.0], requires_grad=True)  # a critic's own output
    targets = torch.tensor([3.0, 2.0, 0.0])
    value_loss(values, targets, old_values, clip_range=0.5).backward()
    assert old_values.grad is None
    # Row 0: V - V_old = 1 > 0.5, so the clipped branch V_old + 0.5 = 0.5 has the larger error
    # (2.5^2 > 2^2) and is chosen: its gradient wrt V is 0. Row 1: |0.1| < 0.5, the branches
    # coincide: 2 (V - target) / 3 = 0. Row 2: clipped 2.5 gives 6.25 < 9: 2 * 3 / 3 = 2.
    assert values.grad.tolist() == pytest.approx([0.0, 0.0, 2.0])


def test_clip_fraction_counts_ratios_outside_the_clip_range_by_hand():
    ratios = torch.tensor([0.7, 0.9, 1.0, 1.19, 1.25])  # outside [0.8, 1.2]: 0.7 and 1.25
    assert clip_fraction(ratios.log(), 0.2).item() == pytest.approx(2 / 5)


def test_actor_critic_loss_weighs_its_terms_by_hand():
    total = actor_critic_loss(torch.tensor(1.5), torch.tensor(4.0), torch.tensor(2.0), 0.5, 0.1)
    assert total.item() == pytest.approx(1.5 + 0.5 * 4.0 - 0.1 * 2.0)
