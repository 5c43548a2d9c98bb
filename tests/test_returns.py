"""Estimators of Psi_t against hand-worked numbers and a direct (non-recursive) summation."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pgrad.returns import discounted_returns, gae, normalize, nstep_returns, td_errors

T, F = True, False


def tensors(rewards, terminated, truncated, next_values=None, values=None):
    out = [
        torch.tensor(rewards, dtype=torch.float32),
        torch.tensor(terminated),
        torch.tensor(truncated),
    ]
    for v in (next_values, values):
        if v is not None:
            out.append(torch.tensor(v, dtype=torch.float32))
    return out


# --- a direct, loop-over-the-definition reference (no recursion) ----------------------------


def direct_nstep(rewards, next_values, terminated, truncated, gamma, n):
    """G_t^(n) by walking forward from t and summing, for 1-D lists."""
    length = len(rewards)
    out = []
    for t in range(length):
        total, k = 0.0, 0
        while True:
            i = t + k
            total += gamma**k * rewards[i]
            ended = terminated[i] or truncated[i] or i == length - 1
            if ended or k == n - 1:
                if not terminated[i]:
                    total += gamma ** (k + 1) * next_values[i]
                break
            k += 1
        out.append(total)
    return out


# --- hand-worked examples -------------------------------------------------------------------


def test_discounted_returns_hand_worked_with_termination_inside_batch():
    # Episode A: r = 1, 2, 3 then terminated; episode B: r = 4, 5, batch ends (not done).
    r, term, trunc = tensors([1, 2, 3, 4, 5], [F, F, T, F, F], [F, F, F, F, F])
    g = discounted_returns(r, term, trunc, gamma=0.5)
    # A: G2 = 3, G1 = 2 + .5*3 = 3.5, G0 = 1 + .5*3.5 = 2.75. B (no bootstrap): G4 = 5, G3 = 6.5.
    assert g.tolist() == pytest.approx([2.75, 3.5, 3.0, 6.5, 5.0])


def test_discounted_returns_truncation_bootstraps_from_final_value():
    # Episode A truncated at step 1 with V(final obs) = 10; episode B terminates at step 3.
    r, term, trunc, nv = tensors([1, 1, 1, 1], [F, F, F, T], [F, T, F, F], [7, 10, 8, 9])
    g = discounted_returns(r, term, trunc, gamma=0.9, next_values=nv)
    # A: G1 = 1 + .9*10 = 10, G0 = 1 + .9*10 = 10. B: G3 = 1 (terminated), G2 = 1.9.
    assert g.tolist() == pytest.approx([10.0, 10.0, 1.9, 1.0])


def test_discounted_returns_are_causal():
    # Changing a reward at step k changes only G_t for t <= k in the same episode.
    r, term, trunc = tensors([1, 1, 1, 1, 1, 1], [F, F, T, F, F, T], [F] * 6)
    base = discounted_returns(r, term, trunc, 0.9)
    r2 = r.clone()
    r2[4] += 100
    changed = (discounted_returns(r2, term, trunc, 0.9) != base).tolist()
    assert changed == [F, F, F, T, T, F]


def test_td_errors_hand_worked():
    r, term, _, nv, v = tensors([1, 2, 3], [F, T, F], [F, F, T], [5, 6, 7], [1, 1, 1])
    delta = td_errors(r, v, nv, term, gamma=0.5)
    # t0: 1 + .5*5 - 1 = 2.5; t1 terminated: 2 - 1 = 1; t2 truncated bootstraps: 3 + 3.5 - 1 = 5.5
    assert delta.tolist() == pytest.approx([2.5, 1.0, 5.5])


def test_gae_hand_worked():
    r, term, trunc, nv, v = tensors([1, 1, 1], [F, T, F], [F, F, F], [2, 0, 4], [1, 2, 3])
    adv = gae(r, v, nv, term, trunc, gamma=0.5, lam=0.5)
    # deltas: d0 = 1 + 1 - 1 = 1, d1 = 1 - 2 = -1 (terminated), d2 = 1 + 2 - 3 = 0.
    # A1 = -1, A0 = 1 + .25 * -1 = 0.75, A2 = 0 (new episode, last step).
    assert adv.tolist() == pytest.approx([0.75, -1.0, 0.0])


def test_nstep_hand_worked():
    r, term, trunc, nv = tensors([1, 2, 3, 4], [F, F, T, F], [F, F, F, F], [10, 20, 30, 40])
    g = nstep_returns(r, nv, term, trunc, gamma=0.5, n=2)
    # t0: 1 + .5*2 + .25*V(s2)=.25*20 -> 7. t1: 2 + .5*3 (terminated at 2, no bootstrap) = 3.5.
    # t2: 3 (terminated). t3: 4 + .5*40 = 24 (batch end bootstraps).
    assert g.tolist() == pytest.approx([7.0, 3.5, 3.0, 24.0])


def test_normalize():
    x = torch.tensor([1.0, 2.0, 3.0, 4.0])
    y = normalize(x)
    assert y.mean().item() == pytest.approx(0.0, abs=1e-6)
    assert y.std(correction=0).item() == pytest.approx(1.0, abs=1e-6)
    assert y.tolist() == pytest.approx(
        [(v - 2.5) / math.sqrt(1.25) for v in [1, 2, 3, 4]], abs=1e-6
    )


# --- property tests against the direct reference ------------------------------------------

episodes = st.integers(min_value=1, max_value=12).flatmap(
    lambda n: st.tuples(
        st.lists(st.floats(-5, 5), min_size=n, max_size=n),
        st.lists(st.floats(-5, 5), min_size=n, max_size=n),
        st.lists(st.sampled_from(["none", "terminated", "truncated"]), min_size=n, max_size=n),
    )
)


@settings(max_examples=200, deadline=None)
@given(episodes, st.floats(0.0, 1.0), st.integers(1, 14))
def test_nstep_matches_direct_sum(data, gamma, n):
    rewards, next_values, ends = data
    term = [e == "terminated" for e in ends]
    trunc = [e == "truncated" for e in ends]
    r, te, tr, nv = tensors(rewards, term, trunc, next_values)
    got = nstep_returns(r, nv, te, tr, gamma, n)
    want = direct_nstep(rewards, next_values, term, trunc, gamma, n)
    assert got.tolist() == pytest.approx(want, abs=1e-4)


@settings(max_examples=200, deadline=None)
@given(episodes, st.floats(0.0, 1.0))
def test_discounted_returns_match_direct_sum(data, gamma):
    rewards, next_values, ends = data
    term = [e == "terminated" for e in ends]
    trunc = [e == "truncated" for e in ends]
    r, te, tr, nv = tensors(rewards, term, trunc, next_values)
    want = direct_nstep(rewards, next_values, term, trunc, gamma, n=10**6)
    assert discounted_returns(r, te, tr, gamma, nv).tolist() == pytest.approx(want, abs=1e-4)
    # Without a critic every bootstrap is 0.
    want0 = direct_nstep(rewards, [0.0] * len(rewards), term, trunc, gamma, n=10**6)
    assert discounted_returns(r, te, tr, gamma).tolist() == pytest.approx(want0, abs=1e-4)


@settings(max_examples=200, deadline=None)
@given(episodes, st.floats(0.0, 1.0), st.floats(0.0, 1.0))
def test_gae_is_the_lambda_weighted_sum_of_deltas(data, gamma, lam):
    rewards, next_values, ends = data
    values = [v / 2 + 0.3 for v in next_values]
    term = [e == "terminated" for e in ends]
    trunc = [e == "truncated" for e in ends]
    r, te, tr, nv, v = tensors(rewards, term, trunc, next_values, values)
    delta = td_errors(r, v, nv, te, gamma).tolist()
    want = []
    for t in range(len(rewards)):
        total, k = 0.0, 0
        while True:
            total += (gamma * lam) ** k * delta[t + k]
            if term[t + k] or trunc[t + k] or t + k == len(rewards) - 1:
                break
            k += 1
        want.append(total)
    assert gae(r, v, nv, te, tr, gamma, lam).tolist() == pytest.approx(want, abs=1e-4)


@settings(max_examples=100, deadline=None)
@given(episodes, st.floats(0.0, 1.0))
def test_gae_limits(data, gamma):
    rewards, next_values, ends = data
    term = [e == "terminated" for e in ends]
    trunc = [e == "truncated" for e in ends]
    # Consistent values: inside an episode V(s_{t+1}) is both next_values[t] and values[t+1].
    values = [0.3] + [
        next_values[t - 1] if not (term[t - 1] or trunc[t - 1]) else -0.7 * next_values[t]
        for t in range(1, len(rewards))
    ]
    r, te, tr, nv, v = tensors(rewards, term, trunc, next_values, values)
    # lambda = 0: the TD errors; lambda = 1: Monte Carlo (bootstrapped) return minus V.
    assert gae(r, v, nv, te, tr, gamma, 0.0).tolist() == pytest.approx(
        td_errors(r, v, nv, te, gamma).tolist(), abs=1e-4
    )
    mc = discounted_returns(r, te, tr, gamma, nv) - v
    assert gae(r, v, nv, te, tr, gamma, 1.0).tolist() == pytest.approx(mc.tolist(), abs=1e-3)
    # n = 1: the TD target r + gamma V(s').
    target = td_errors(r, v, nv, te, gamma) + v
    assert nstep_returns(r, nv, te, tr, gamma, 1).tolist() == pytest.approx(
        target.tolist(), abs=1e-4
    )


def test_batched_envs_are_independent():
    # Two envs side by side (T, N) give the same as each env alone.
    r = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    term = torch.tensor([[F, T], [F, F], [T, F]])
    trunc = torch.tensor([[F, F], [T, F], [F, F]])
    nv = torch.tensor([[0.5, 0.0], [9.0, 1.0], [0.0, 2.0]])
    v = torch.tensor([[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]])
    both = gae(r, v, nv, term, trunc, 0.9, 0.8)
    for i in range(2):
        alone = gae(r[:, i], v[:, i], nv[:, i], term[:, i], trunc[:, i], 0.9, 0.8)
        assert both[:, i].tolist() == pytest.approx(alone.tolist())


def test_nstep_rejects_n_below_one():
    r, term, trunc, nv = tensors([1.0], [F], [F], [0.0])
    with pytest.raises(ValueError, match="n must be >= 1"):
        nstep_returns(r, nv, term, trunc, 0.9, 0)
