"""Losses: pure functions from log-probs, advantages and values to scalars to minimise.

Each is a mean over the transitions given; callers select the transitions to train on
(dropping, for example, the ignored autoreset steps) before calling.
"""

from __future__ import annotations

import torch


def policy_gradient_loss(log_probs: torch.Tensor, advantages: torch.Tensor) -> torch.Tensor:
    """L(theta) = -mean_t[ log pi_theta(a_t|s_t) * Psi_t ].

    Its gradient is minus the policy-gradient estimate -mean_t[ grad log pi(a_t|s_t) Psi_t ].
    Psi_t (``advantages``) is detached: it weights the score function and must not be
    differentiated through (a critic inside Psi_t would otherwise be trained by the policy loss).
    """
    return -(log_probs * advantages.detach()).mean()


def value_loss(
    values: torch.Tensor,
    targets: torch.Tensor,
    old_values: torch.Tensor | None = None,
    clip_range: float | None = None,
) -> torch.Tensor:
    """Regression of V(s_t) onto its targets: mean_t[ (V(s_t) - target_t)^2 ].

    With ``old_values`` and ``clip_range`` (PPO's value clipping), the pessimistic
    mean_t[ max((V - target)^2, (V_old + clip(V - V_old, -eps, eps) - target)^2) ].
    Targets are detached.
    """
    targets = targets.detach()
    loss = (values - targets) ** 2
    if clip_range is not None:
        if old_values is None:
            raise ValueError("value clipping needs old_values")
        clipped = old_values + (values - old_values).clamp(-clip_range, clip_range)
        loss = torch.maximum(loss, (clipped - targets) ** 2)
    return loss.mean()


def entropy_bonus(entropy: torch.Tensor) -> torch.Tensor:
    """mean_t[ H(pi(.|s_t)) ]; it is subtracted from the loss (times ``entropy_coef``)."""
    return entropy.mean()
