"""Psi_t for token sequences, from the shared estimators in ``pgrad.returns``.

A response is an episode: token t is action a_t, the episode terminates at the response's last
real token (EOS, or the last of ``max_new_tokens``), and the per-token reward is

    r_t = -beta * kl_t + [t = last] * score(x, y),
    kl_t = log pi_old(a_t|s_t) - log pi_ref(a_t|s_t)   (k1; ``rl.Trainer.rewards`` says why),

so E[G_0] = E[score] - beta KL(pi || pi_ref) is the KL-regularised RLHF objective. With gamma = 1
the shared ``discounted_returns`` gives the reward-to-go G_t and ``gae`` the PPO advantages;
padding after the last token is cut off by ``terminated`` and masked out of the losses.
"""

from __future__ import annotations

import torch

from pgrad import returns


def token_rewards(
    scores: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, beta: float
) -> torch.Tensor:
    """(B, T) rewards r_t = -beta kl_t on response tokens, plus the sequence score on the last
    real token; 0 on padding."""
    rewards = torch.where(mask, -beta * kl, 0.0)
    last = (mask.sum(-1) - 1).clamp(min=0)
    rewards[torch.arange(len(scores), device=scores.device), last] += scores
    return rewards


def _episodes(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Time-major (terminated, truncated) flags: each response terminates at its last token."""
    terminated = torch.zeros_like(mask)
    terminated[torch.arange(len(mask), device=mask.device), (mask.sum(-1) - 1).clamp(min=0)] = True
    return terminated.T.contiguous(), torch.zeros_like(terminated.T)


def reward_to_go(rewards: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T) G_t = sum_{t' >= t} r_t' within each response (gamma = 1)."""
    terminated, truncated = _episodes(mask)
    return returns.discounted_returns(rewards.T.contiguous(), terminated, truncated, 1.0).T


def leave_one_out_baseline(sequence_returns: torch.Tensor, k: int) -> torch.Tensor:
    """RLOO's baseline: for sample i of a prompt's k samples, b_i = mean_{j != i} G_0^j.

    ``sequence_returns`` (B,) holds the k samples of each prompt next to each other. b_i does
    not depend on sample i, so G - b_i stays an unbiased weight on grad log pi(y_i).
    """
    grouped = sequence_returns.view(-1, k)
    return ((grouped.sum(-1, keepdim=True) - grouped) / (k - 1)).reshape(-1)


def group_baseline(
    sequence_returns: torch.Tensor, k: int, scale: bool, eps: float = 1e-4
) -> tuple[torch.Tensor, torch.Tensor]:
    """GRPO's (b_i, s_i) for sample i of a prompt's k samples (``sequence_returns`` (B,), the k
    of each prompt side by side): b_i = mean_j G_0^j over the whole group, i included, and
    s_i = std_j G_0^j + eps (sample std, as TRL), or 1 without ``scale`` (Dr. GRPO), so that
    Psi_t = (G_t - b_i) / s_i.

    Both depend on sample i itself: E[(G - b_i) grad log pi(y_i)] = (1 - 1/k) grad J, a
    shrunk but unbiased direction; dividing by s_i re-weights prompts by how much their samples
    disagree (Liu et al., 2025, "Understanding R1-Zero-like training": Dr. GRPO drops it).
    """
    grouped = sequence_returns.view(-1, k)
    mean = grouped.mean(-1, keepdim=True).expand_as(grouped)
    if not scale:
        return mean.reshape(-1), torch.ones_like(sequence_returns)
    std = grouped.std(-1, keepdim=True).expand_as(grouped) + eps
    return mean.reshape(-1), std.reshape(-1)


def aggregate(
    per_token: torch.Tensor, mask: torch.Tensor, how: str, max_tokens: int | None = None
) -> torch.Tensor:
    """A (B, T) per-token loss as one number: ``token``, the mean over the batch's response
    tokens; ``response``, the mean over responses of each response's sum (the sequence-level
    estimator: sum_t grad log pi(y_t|x, y_<t) = grad log pi(y|x)); ``sequence``, the mean over
    responses of each response's mean (GRPO: a long response's tokens weigh less);
    ``constant``, the sum over tokens / (B * ``max_tokens``) (Dr. GRPO: every token weighs the
    same whatever its response's length)."""
    terms = torch.where(mask, per_token, 0.0)
    if how == "token":
        return terms.sum() / mask.sum()
    if how == "response":
        return terms.sum(-1).mean()
    if how == "sequence":
        return (terms.sum(-1) / mask.sum(-1).clamp(min=1)).mean()
    if how == "constant":
        return terms.sum() / (len(mask) * max_tokens)
    raise ValueError(f"unknown aggregation {how!r}; expected token, response, sequence or constant")


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, lam: float
) -> torch.Tensor:
    """(B, T) GAE(lambda) advantages over tokens (gamma = 1): the shared ``returns.gae`` with
    V(s_{t+1}) the next token's value and 0 after the last token."""
    terminated, truncated = _episodes(mask)
    values_tm = torch.where(mask, values, 0.0).T.contiguous()
    next_values = torch.cat([values_tm[1:], torch.zeros_like(values_tm[:1])])
    advantages = returns.gae(
        rewards.T.contiguous(), values_tm, next_values, terminated, truncated, 1.0, lam
    )
    return advantages.T
