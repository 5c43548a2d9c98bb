"""RLHF's updates option by option against from-scratch references on the enumerable TinyLM of
``test_rlhf_math``: PPO's epochs, minibatches, advantage normalisation, value clipping,
``value_detach`` and gradient clipping; GRPO's and Dr. GRPO's group advantages, clip and KL
loss off-policy; REINFORCE's running baseline and its momentum; the missing-EOS penalty.

The references take log pi(a_t|s_t), h_t and the rewards r_t from ``sequences.forward`` and
``Trainer.rewards`` (checked against separate forward passes and by hand in ``test_rlhf``) and
write the rest (returns, GAE, normalisation, losses, shuffling, clipping, Adam) themselves.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator

import pytest
import torch
from test_rlhf_math import SCORES, T, responses, trainer
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


def shuffled_minibatches(config, seed: int) -> Iterator[torch.Tensor]:
    """The rows of each minibatch step: ``ppo_epochs`` passes over ROWS, each in a fresh random
    order from torch's generator seeded with ``seed`` (in order if one minibatch holds all)."""
    B = len(ROWS)
    torch.manual_seed(seed)
    for _ in range(config.ppo_epochs):
        order = torch.randperm(B) if config.minibatch_size < B else torch.arange(B)
        for start in range(0, B, config.minibatch_size):
            yield order[start : start + config.minibatch_size]


def clipped_surrogate(ratio: torch.Tensor, a: torch.Tensor, eps: float) -> torch.Tensor:
    return torch.min(ratio * a, ratio.clamp(1 - eps, 1 + eps) * a)


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
    for rows in shuffled_minibatches(c, seed):
        log_probs, _, hidden = forward(policy, responses([ROWS[i] for i in rows]), True)
        ratio = (log_probs - batch.log_probs[rows]).exp()
        policy_loss = -clipped_surrogate(ratio, psi[rows], c.clip_range).mean()
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


def reference_grpo(policy, batch, rewards, config, seed: int) -> None:
    """GRPO: Psi_t = (G_t - b) / (s + 1e-4) with b and s the mean and sample std of G_0 over
    the response's group of ``samples_per_prompt`` (``dr_grpo``: Psi_t = G_t - b); then
    ``ppo_epochs`` passes of shuffled minibatches, each one Adam step (eps 1e-5) on the clipped
    gradient of -mean_i mean_t min(rho A, clip(rho) A) + kl_loss_coef mean_i mean_t k3,
    k3 = q - 1 - log q with q = pi_ref / pi (``dr_grpo``: each sum over tokens divided by the
    minibatch's responses times ``max_new_tokens`` instead)."""
    c = config
    dr = c.loss_type == "dr_grpo"
    g = rewards.flip(-1).cumsum(-1).flip(-1)  # G_t = sum_{t' >= t} r_t'
    k = c.samples_per_prompt
    psi = torch.zeros_like(g)
    for first in range(0, len(g), k):
        group = [float(g[i, 0]) for i in range(first, first + k)]
        mean = sum(group) / k
        std = math.sqrt(sum((x - mean) ** 2 for x in group) / (k - 1))
        for i in range(first, first + k):
            psi[i] = g[i] - mean if dr else (g[i] - mean) / (std + 1e-4)
    if c.normalize_advantage:  # over the batch's tokens (every TinyLM response has all T)
        psi = standardized(psi)

    def per_response(x: torch.Tensor) -> torch.Tensor:
        return x.sum(-1) / c.max_new_tokens if dr else x.mean(-1)

    params = list(policy.parameters())
    optimizer = torch.optim.Adam(params, lr=c.learning_rate, eps=1e-5, foreach=False)
    for rows in shuffled_minibatches(c, seed):
        log_probs, _ = forward(policy, responses([ROWS[i] for i in rows]))
        ratio = (log_probs - batch.log_probs[rows]).exp()
        surrogate = clipped_surrogate(ratio, psi[rows], c.clip_range)
        q = (batch.ref_log_probs[rows] - log_probs).exp()
        k3 = q - 1 - torch.log(q)
        loss = -per_response(surrogate).mean() + c.kl_loss_coef * per_response(k3).mean()
        reference_step(params, optimizer, loss, c.max_grad_norm)


GRPO_OPTIONS = {
    "grpo": {},
    "dr_grpo": {"loss_type": "dr_grpo"},
    "no kl loss": {"kl_loss_coef": 0.0},
    "normalised advantages": {"normalize_advantage": True},
    "one minibatch, three epochs": {"minibatch_size": 8, "ppo_epochs": 3},
    "tight gradient clipping": {"max_grad_norm": 0.05},
}


@pytest.mark.parametrize("option", list(GRPO_OPTIONS))
def test_grpo_update_off_policy_equals_a_from_scratch_grpo(option):
    """Past the first minibatch the policy has moved, so ratios leave 1 and the clip bites
    (the expected-gradient tests in ``test_rlhf_math`` are at theta_old, where it cannot)."""
    keys = {"ppo_epochs": 2, "minibatch_size": 4, "clip_range": 0.05, "kl_loss_coef": 0.1,
            "learning_rate": 0.05, "beta": 0.1, **GRPO_OPTIONS[option]}  # fmt: skip
    t = trainer("grpo", near=True, scores=True, **keys)
    batch = t.score(responses(ROWS))
    rewards = t.rewards(batch)
    policy = copy.deepcopy(t.policy)
    before = [p.detach().clone() for p in policy.parameters()]
    torch.manual_seed(5)
    stats = t.update(batch)
    reference_grpo(policy, batch, rewards, t.config, seed=5)
    assert stats["clip_fraction"] > 0  # the clip took part
    for ours, theirs, start in zip(t.policy.parameters(), policy.parameters(), before, strict=True):
        assert (ours - start).abs().max() > 1e-4
        torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-9, msg=option)


def test_a_response_without_eos_pays_the_missing_eos_penalty_on_its_last_token():
    """Scores S_i - 0.5 [no EOS]; with beta = 0 the per-token rewards are 0 but for that
    score on each response's last token."""
    t = trainer("reinforce", scores=True, beta=0.0, missing_eos_penalty=0.5)
    r = responses([0, 4, 8])
    r.ended = torch.tensor([True, False, True])
    batch = t.score(r)
    expected = [SCORES[0], SCORES[4] - 0.5, SCORES[8]]
    assert batch.scores.tolist() == pytest.approx(expected, rel=1e-12)
    rewards = t.rewards(batch)
    assert rewards[:, -1].tolist() == pytest.approx(expected, rel=1e-12)
    assert rewards[:, :-1].abs().max() == 0


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
