"""Losses against hand-worked numbers, and their gradients against the estimator they stand for."""

import pytest
import torch

from pgrad.losses import entropy_bonus, policy_gradient_loss, value_loss


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
