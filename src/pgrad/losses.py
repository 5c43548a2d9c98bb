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


def clipped_surrogate(
    log_probs: torch.Tensor,
    old_log_probs: torch.Tensor,
    advantages: torch.Tensor,
    clip_range: float,
) -> torch.Tensor:
    """PPO's clipped surrogate per sample, min(rho_t A_t, clip(rho_t, 1 - eps, 1 + eps) A_t),
    rho_t = pi_theta(a_t|s_t) / pi_old(a_t|s_t) = exp(log_prob - old_log_prob) (A_t detached)."""
    ratio = torch.exp(log_probs - old_log_probs.detach())
    advantages = advantages.detach()
    unclipped = ratio * advantages
    clipped = ratio.clamp(1.0 - clip_range, 1.0 + clip_range) * advantages
    return torch.minimum(unclipped, clipped)


def clipped_surrogate_loss(
    log_probs: torch.Tensor,
    old_log_probs: torch.Tensor,
    advantages: torch.Tensor,
    clip_range: float,
) -> torch.Tensor:
    """PPO's clipped surrogate, negated for minimisation:

        L(theta) = -mean_t[ min(rho_t A_t, clip(rho_t, 1 - eps, 1 + eps) A_t) ],
        rho_t = pi_theta(a_t|s_t) / pi_old(a_t|s_t) = exp(log_prob - old_log_prob).

    At rho = 1 its gradient is ``policy_gradient_loss``'s; the clip removes the incentive to move
    rho outside [1 - eps, 1 + eps] in the direction the advantage favours.
    """
    return -clipped_surrogate(log_probs, old_log_probs, advantages, clip_range).mean()


def value_loss(
    values: torch.Tensor,
    targets: torch.Tensor,
    old_values: torch.Tensor | None = None,
    clip_range: float | None = None,
) -> torch.Tensor:
    """Regression of V(s_t) onto its targets: mean_t[ (V(s_t) - target_t)^2 ].

    With ``old_values`` and ``clip_range`` (PPO's value clipping), the pessimistic
    mean_t[ max((V - target)^2, (V_old + clip(V - V_old, -eps, eps) - target)^2) ].
    Targets and V_old are detached: the gradient reaches only V(s_t).
    """
    targets = targets.detach()
    loss = (values - targets) ** 2
    if clip_range is not None:
        if old_values is None:
            raise ValueError("value clipping needs old_values")
        old_values = old_values.detach()
        clipped = old_values + (values - old_values).clamp(-clip_range, clip_range)
        loss = torch.maximum(loss, (clipped - targets) ** 2)
    return loss.mean()


def entropy_bonus(entropy: torch.Tensor) -> torch.Tensor:
    """mean_t[ H(pi(.|s_t)) ]; it is subtracted from the loss (times ``entropy_coef``)."""
    return entropy.mean()


def actor_critic_loss(
    policy_loss: torch.Tensor,
    value_loss: torch.Tensor,
    entropy: torch.Tensor,
    value_coef: float,
    entropy_coef: float,
) -> torch.Tensor:
    """L = L_pi + value_coef * L_V - entropy_coef * mean_t H: one loss for an actor and a critic
    that share an optimizer step (A2C, PPO)."""
    return policy_loss + value_coef * value_loss - entropy_coef * entropy


def approx_kl(log_ratio: torch.Tensor) -> torch.Tensor:
    """KL(pi_old || pi_theta) estimated on samples from pi_old with the k3 estimator
    mean[(rho - 1) - log rho], rho = pi_theta / pi_old = exp(``log_ratio``): unbiased and never
    negative."""
    return ((log_ratio.exp() - 1.0) - log_ratio).mean()


def clip_fraction(log_ratio: torch.Tensor, clip_range: float) -> torch.Tensor:
    """The fraction of samples whose ratio rho = exp(``log_ratio``) lies outside
    [1 - eps, 1 + eps], where the clipped surrogate passes no gradient."""
    return ((log_ratio.exp() - 1.0).abs() > clip_range).float().mean()


def explained_variance(predictions: torch.Tensor, targets: torch.Tensor) -> float:
    """1 - Var[target - prediction] / Var[target]: 1 is a perfect critic, 0 a constant one;
    NaN where Var[target] is 0 or undefined (fewer than two targets)."""
    if targets.numel() < 2:
        return float("nan")
    variance = targets.var()
    if variance == 0:
        return float("nan")
    return float(1.0 - (targets - predictions).var() / variance)


def kl_estimate(log_ratio: torch.Tensor, estimator: str = "k1") -> torch.Tensor:
    """Per-sample estimates of KL(pi || q) from samples a ~ pi, with log_ratio = log pi(a) -
    log q(a) (Schulman's estimators; RLHF's per-token penalty with q the reference model):

        k1 = log_ratio                      unbiased, can be negative
        k2 = log_ratio^2 / 2                biased, never negative
        k3 = (r - 1) - log r, r = q/pi      unbiased, never negative (r - 1 >= log r)

    "Unbiased" is of the KL's *value*: E_{a~pi}[k] = KL(pi || q). It says nothing of a gradient.
    As a reward -beta k weighting grad log pi (with k held fixed), only k1 gives the KL's
    gradient in expectation: the dropped E[grad k] is E[grad log pi] = 0 for k1 but
    -E_q[grad log pi] != 0 for k3, so RLHF's reward uses k1 (``rlhf.rl.Trainer.rewards``).
    Differentiated as a loss on samples from pi_old, k3 of log pi_theta - log q has expected
    gradient grad KL(q || pi_theta), the reverse KL (``rlhf.rl.kl_loss``).

    ``approx_kl`` is the mean of k3 with pi and q swapped (KL(pi_old || pi_theta) on samples
    from pi_old).
    """
    if estimator == "k1":
        return log_ratio
    if estimator == "k2":
        return 0.5 * log_ratio**2
    if estimator == "k3":
        return torch.expm1(-log_ratio) + log_ratio
    raise ValueError(f"KL estimator must be k1, k2 or k3, got {estimator!r}")


def temperature_loss(
    log_alpha: torch.Tensor, log_prob: torch.Tensor, target_entropy: float
) -> torch.Tensor:
    """-mean[log alpha (log pi + H_target)], log pi detached: descends on alpha when the
    entropy -E[log pi] is above H_target, ascends when it is below."""
    return -(log_alpha * (log_prob.detach() + target_entropy)).mean()
