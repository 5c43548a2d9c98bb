"""RLHF's updates option by option against from-scratch references on the enumerable TinyLM of
``test_rlhf_math``: PPO's epochs, minibatches, advantage normalisation, value clipping,
``value_detach`` and gradient clipping; REINFORCE's running baseline and its momentum.

The references take log pi(a_t|s_t), h_t and the rewards r_t from ``sequences.forward`` and
``Trainer.rewards`` (checked against separate forward passes and by hand in ``test_rlhf``) and
write the rest (returns, GAE, normalisation, losses, shuffling, clipping, Adam) themselves.
"""

from __future__ import annotations

import copy

import pytest
import torch
from test_rlhf_math import T, responses, trainer
from test_updates import reference_step, standardized

from pgrad.rlhf.sequences import forward

ROWS = [0, 4, 8, 2, 6, 3]  # six responses: minibatches of 4 leave a last one of 2


def reference_gae(rewards: torch.Tensor, values: torch.Tensor, lam: float) -> torch.Tensor:
    """Over tokens, gamma = 1: A_t = delta_t + lambda A_{t+1}, delta_t = r_t + V_{t+1} - V_t,
    V = 0 after the last token (every TinyLM response has all T tokens)."""
    advantages = torch.zeros_like(rewards)
    for b in range(rewards.shape[0]):
        future, next_value = 0.0, 0.0
        for t in reversed(range(T)):
            delta = rewards[b, t] + next_value - values[b, t]
            future = delta + lam * future
            advantages[b, t], next_value = future, values[b, t]
    return advantages


def reference_ppo(policy, value_head, batch, rewards, config, seed: int) -> None:
    """``ppo_epochs`` passes of shuffled minibatches of ``minibatch_size`` responses; the loss
    -mean min(rho A, clip(rho) A) + value_coef mean max((V - R)^2, (V_clip - R)^2) over the
    minibatch's tokens; one Adam step each (eps 1e-5) on the clipped gradient."""
    c = config
    raw = reference_gae(rewards, batch.values, c.gae_lambda)
    targets = raw + batch.values
    psi = standardized(raw) if c.normalize_advantage else raw  # over the whole batch's tokens
    params = [*policy.parameters(), *value_head.parameters()]
    optimizer = torch.optim.Adam(params, lr=c.learning_rate, eps=1e-5, foreach=False)
    B = len(ROWS)
    torch.manual_seed(seed)
    for _ in range(c.ppo_epochs):
        order = torch.randperm(B) if c.minibatch_size < B else torch.arange(B)
        for start in range(0, B, c.minibatch_size):
            rows = order[start : start + c.minibatch_size]
            log_probs, _, hidden = forward(policy, responses([ROWS[i] for i in rows]), True)
            ratio = (log_probs - batch.log_probs[rows]).exp()
            a, eps = psi[rows], c.clip_range
            policy_loss = -torch.min(ratio * a, ratio.clamp(1 - eps, 1 + eps) * a).mean()
            values = value_head(hidden.detach() if c.value_detach else hidden)
            old, target = batch.values[rows], targets[rows]
            error = (values - target) ** 2
            if c.clip_range_value is not None:
                clipped = old + (values - old).clamp(-c.clip_range_value, c.clip_range_value)
                error = torch.max(error, (clipped - target) ** 2)
            loss = policy_loss + c.value_coef * error.mean()
            reference_step(params, optimizer, loss, c.max_grad_norm)


PPO_OPTIONS = {
    "defaults (advantages normalised)": {},
    "raw advantages": {"normalize_advantage": False},
    "no value clipping": {"clip_range_value": None},
    "tight value clipping": {"clip_range_value": 0.01, "value_coef": 1.0},
    "value_detach": {"value_detach": True, "value_coef": 1.0},
    "one minibatch, three epochs": {"minibatch_size": 8, "ppo_epochs": 3},
    "tight gradient clipping": {"max_grad_norm": 0.05, "clip_range": 0.05},
}


@pytest.mark.parametrize("option", list(PPO_OPTIONS))
def test_rlhf_ppo_update_equals_a_from_scratch_ppo(option):
    keys = {"minibatch_size": 4, "ppo_epochs": 2, "learning_rate": 0.05, "beta": 0.1,
            **PPO_OPTIONS[option]}  # fmt: skip
    t = trainer("ppo", near=True, scores=True, **keys)
    with torch.no_grad():  # a critic that is not 0 everywhere, so value clipping can bite
        t.value_head.linear.weight.normal_(generator=torch.Generator().manual_seed(3))
    batch = t.score(responses(ROWS))
    rewards = t.rewards(batch)
    policy, value_head = copy.deepcopy(t.policy), copy.deepcopy(t.value_head)
    before = [p.detach().clone() for p in policy.parameters()]
    torch.manual_seed(5)
    t.update(batch)
    reference_ppo(policy, value_head, batch, rewards, t.config, seed=5)
    for ours, theirs, start in zip(t.policy.parameters(), policy.parameters(), before, strict=True):
        assert (ours - start).abs().max() > 1e-4  # every weight moved, so the match means something
        torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-9, msg=option)
    for ours, theirs in zip(t.value_head.parameters(), value_head.parameters(), strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-9, msg=option)


@pytest.mark.parametrize("momentum", [0.9, 0.5, 0.0])
def test_reinforce_baseline_is_a_running_mean_of_g0_with_its_momentum(momentum):
    """Batch k's Psi_t = G_t - b_{k-1} (b_0 = 0), then b_k = m b_{k-1} + (1 - m) mean_i G_0^i
    (b_1 = the first batch's mean): G_t the reward-to-go over the response's tokens."""
    t = trainer("reinforce", near=True, scores=True, beta=0.1, baseline_momentum=momentum)
    baseline = None
    for rows in ([0, 4], [8, 2, 6], [3, 3, 1]):
        batch = t.score(responses(rows))
        rewards = t.rewards(batch)
        g = rewards.flip(-1).cumsum(-1).flip(-1)  # G_t = sum_{t' >= t} r_t'
        psi = t.psi(batch, rewards)
        torch.testing.assert_close(psi, g - (baseline or 0.0))
        mean = float(g[:, 0].mean())
        baseline = mean if baseline is None else momentum * baseline + (1 - momentum) * mean
        assert t.baseline == pytest.approx(baseline, rel=1e-12)
