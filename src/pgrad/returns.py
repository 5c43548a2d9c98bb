"""Estimators of Psi_t, the weight on grad log pi(a_t|s_t) in the policy gradient.

All functions take time-major tensors of shape (T, ...) (usually (T, n_envs)) holding several
episodes back to back, and use the same conventions for episode boundaries:

- ``terminated[t]``: the episode really ended at step t; nothing follows, V(s_{t+1}) = 0.
- ``truncated[t]``: the episode was cut (a time limit); the return continues past the cut, so it
  is estimated by bootstrapping from ``next_values[t]`` = V(s_{t+1}), the value of the real final
  observation (not of the first observation of the next episode).
- ``next_values[t]`` = V(s_{t+1}) for every step: the value of the true successor state.
- The last step of the batch (t = T-1) that did not terminate is treated as truncated: the return
  bootstraps from ``next_values[T-1]``.

With ``next_values=None`` (REINFORCE without a critic), bootstraps are 0.

The backward recursions run in NumPy: over T steps of N envs they are T small vector ops, and a
NumPy op on a few floats costs a fraction of a torch one. Outputs are tensors like the inputs.
"""

from __future__ import annotations

import numpy as np
import torch


def _numpy(*tensors: torch.Tensor) -> list[np.ndarray]:
    return [t.detach().cpu().numpy() for t in tensors]


def _tensor(array: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(array).to(like.device)


def _cuts(terminated: np.ndarray, truncated: np.ndarray) -> np.ndarray:
    """Where the recursion stops: episode ends, and the end of the batch."""
    cut = terminated | truncated
    cut[-1] = True
    return cut


def discounted_returns(
    rewards: torch.Tensor,
    terminated: torch.Tensor,
    truncated: torch.Tensor,
    gamma: float,
    next_values: torch.Tensor | None = None,
) -> torch.Tensor:
    """Reward-to-go G_t = sum_{k>=0} gamma^k r_{t+k}, summed to the end of t's episode.

    Causality: G_t holds only rewards from t onwards. Recursively, G_t = r_t + gamma G_{t+1}
    inside an episode; at its last step G_t = r_t (terminated) or r_t + gamma V(s_{t+1})
    (truncated, or the batch ended).
    """
    if next_values is None:
        next_values = torch.zeros_like(rewards)
    r, term, trunc, v_next = _numpy(rewards, terminated, truncated, next_values)
    cut = _cuts(term, trunc)
    bootstrap = np.where(term, 0.0, v_next).astype(r.dtype)
    g = r.dtype.type(gamma)
    returns = np.empty_like(r)
    future = np.zeros_like(r[0])
    for t in reversed(range(r.shape[0])):
        future = r[t] + g * np.where(cut[t], bootstrap[t], future)
        returns[t] = future
    return _tensor(returns, rewards)


def td_errors(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_values: torch.Tensor,
    terminated: torch.Tensor,
    gamma: float,
) -> torch.Tensor:
    """One-step TD errors delta_t = r_t + gamma (1 - terminated_t) V(s_{t+1}) - V(s_t).

    Truncation needs no special case: ``next_values`` already holds V of the real successor.
    """
    return rewards + gamma * torch.where(terminated, 0.0, next_values) - values


def nstep_returns(
    rewards: torch.Tensor,
    next_values: torch.Tensor,
    terminated: torch.Tensor,
    truncated: torch.Tensor,
    gamma: float,
    n: int,
) -> torch.Tensor:
    """n-step returns G_t^(n) = sum_{k=0}^{m-1} gamma^k r_{t+k} + gamma^m V(s_{t+m}).

    m = min(n, steps to the end of t's episode or of the batch); the bootstrap V(s_{t+m}) is
    ``next_values[t+m-1]``, and 0 if the episode terminated at t+m-1. n = 1 gives the TD target
    r_t + gamma V(s_{t+1}); n >= T gives ``discounted_returns`` with bootstrapping.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if n >= rewards.shape[0]:  # every return runs to its episode's or the batch's end
        return discounted_returns(rewards, terminated, truncated, gamma, next_values)
    r, v_next, term, trunc = _numpy(rewards, next_values, terminated, truncated)
    T = r.shape[0]
    cut = _cuts(term, trunc)
    bootstrap = np.where(term, 0.0, v_next).astype(r.dtype)
    returns = np.zeros_like(r)
    open_ = np.ones_like(cut)  # G_t^(n) still summing rewards
    for k in range(min(n, T)):
        # Row t of this step looks at step t + k.
        span = T - k
        discount = r.dtype.type(gamma**k)
        live = open_[:span]
        returns[:span] += np.where(live, discount * r[k:], 0.0).astype(r.dtype)
        stop = live & (cut[k:] | (k == n - 1))
        returns[:span] += np.where(stop, discount * r.dtype.type(gamma) * bootstrap[k:], 0.0)
        open_[:span] = live & ~stop
    return _tensor(returns, rewards)


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_values: torch.Tensor,
    terminated: torch.Tensor,
    truncated: torch.Tensor,
    gamma: float,
    lam: float,
) -> torch.Tensor:
    """Generalised advantage estimates A_t = sum_{k>=0} (gamma lambda)^k delta_{t+k}.

    Recursively A_t = delta_t + gamma lambda A_{t+1} inside an episode, A_t = delta_t at its
    last step. lambda = 0 gives the TD errors. lambda = 1 gives G_t - V(s_t), G_t the
    reward-to-go bootstrapped at the rollout's end, when ``next_values[t] = values[t + 1]``
    inside an episode (the V terms then telescope; a critic evaluated differently at s_{t+1}
    leaves their differences in). Value targets are A_t + V(s_t).
    """
    deltas = td_errors(rewards, values, next_values, terminated, gamma)
    delta, term, trunc = _numpy(deltas, terminated, truncated)
    # gamma * lambda inside an episode, 0 where the recursion stops.
    decay = np.where(_cuts(term, trunc), 0.0, gamma * lam).astype(delta.dtype)
    advantages = np.empty_like(delta)
    future = np.zeros_like(delta[0])
    for t in reversed(range(delta.shape[0])):
        future = delta[t] + decay[t] * future
        advantages[t] = future
    return _tensor(advantages, rewards)


def normalize(x: torch.Tensor, eps: float = 1e-8, dim: int | None = None) -> torch.Tensor:
    """(x - mean(x)) / (std(x) + eps), with the population standard deviation; over ``dim``
    only (each slice on its own) if given."""
    if dim is None:
        return (x - x.mean()) / (x.std(correction=0) + eps)
    return (x - x.mean(dim, keepdim=True)) / (x.std(dim, correction=0, keepdim=True) + eps)


def soft_target(
    rewards: torch.Tensor,
    terminated: torch.Tensor,
    next_q1: torch.Tensor,
    next_q2: torch.Tensor,
    next_log_prob: torch.Tensor,
    alpha: torch.Tensor | float,
    gamma: float,
) -> torch.Tensor:
    """SAC's soft Bellman target y = r + gamma (1 - terminated) (min(Q'_1, Q'_2)(s', a') -
    alpha log pi(a'|s')), a' ~ pi(.|s'): the soft value of s' under the twin targets' minimum. A
    truncated transition bootstraps (terminated = 0), from the real final s'."""
    soft_value = torch.minimum(next_q1, next_q2) - alpha * next_log_prob
    return rewards + gamma * (1.0 - terminated) * soft_value
