"""SAC's parts against hand-worked numbers and numerical checks; its runs keep pgrad's promises."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import pgrad
from pgrad.algos.sac import SAC, SACConfig, soft_target, temperature_loss
from pgrad.envs import make_vec_env
from pgrad.policies import SquashedNormal


def test_squashed_log_prob_is_the_change_of_variables_and_integrates_to_one():
    mean, log_std = torch.tensor([[0.3]], dtype=torch.float64), torch.tensor([[-0.2]])
    loc, scale = torch.tensor([0.5]), torch.tensor([2.0])  # actions in [-1.5, 2.5]
    dist = SquashedNormal(mean, log_std.double(), loc.double(), scale.double())
    # Numerical density: P(a in [a_i, a_i + h]) from the Gaussian CDF of u = atanh((a-loc)/scale).
    edges = torch.linspace(-1.5 + 1e-6, 2.5 - 1e-6, 20001, dtype=torch.float64)
    u = torch.atanh((edges - 0.5) / 2.0)
    cdf = torch.distributions.Normal(0.3, math.exp(-0.2)).cdf(u)
    numeric = (cdf[1:] - cdf[:-1]) / (edges[1:] - edges[:-1])
    centres = (edges[1:] + edges[:-1]) / 2
    analytic = dist.log_prob(centres[:, None]).exp()
    mid = slice(1000, -1000)  # away from the bounds, where the density is flat enough
    torch.testing.assert_close(analytic[mid], numeric[mid], rtol=1e-4, atol=1e-6)
    assert abs(float((analytic * (edges[1:] - edges[:-1])).sum()) - 1.0) < 1e-3
    # rsample's exact log-prob agrees with log_prob of the sample (the atanh round trip).
    a, lp = SquashedNormal(mean.expand(1000, 1), log_std.double().expand(1000, 1),
                           loc.double(), scale.double()).rsample_with_log_prob()  # fmt: skip
    torch.testing.assert_close(lp, dist.log_prob(a), rtol=1e-6, atol=1e-6)


def test_soft_bellman_target_against_hand_worked_numbers():
    rewards = torch.tensor([1.0, 2.0, 0.5])
    terminated = torch.tensor([0.0, 1.0, 0.0])  # the third step was truncated: still bootstraps
    next_q1, next_q2 = torch.tensor([10.0, 5.0, 3.0]), torch.tensor([9.0, 6.0, 4.0])
    next_log_prob = torch.tensor([-1.0, -2.0, 0.5])
    y = soft_target(rewards, terminated, next_q1, next_q2, next_log_prob, alpha=0.2, gamma=0.9)
    # 1 + 0.9 (min(10, 9) - 0.2 * -1) = 9.28;  terminated: 2;  0.5 + 0.9 (3 - 0.2 * 0.5) = 3.11
    torch.testing.assert_close(y, torch.tensor([9.28, 2.0, 3.11]))


@pytest.mark.parametrize(("entropy", "direction"), [(3.0, -1), (-3.0, 1)])
def test_alpha_falls_when_entropy_is_above_the_target_and_rises_below(entropy, direction):
    log_alpha = torch.nn.Parameter(torch.tensor(0.0))
    optimizer = torch.optim.SGD([log_alpha], lr=0.1)
    log_prob = torch.full((64,), -entropy)  # entropy estimate = -mean log pi
    temperature_loss(log_alpha, log_prob, target_entropy=-1.0).backward()
    optimizer.step()
    assert math.copysign(1, log_alpha.item()) == direction


def test_the_buffer_skips_autoreset_steps_and_keeps_truncations_bootstrappable():
    envs = make_vec_env("Pendulum-v1", 1)  # 200-step time limit: truncated, never terminated
    torch.manual_seed(0)
    sac = SAC(SACConfig(steps=1000, learning_starts=10**6, buffer_size=1000), envs, seed=0)
    for _ in range(250):
        sac.iterate()
    assert sac.buffer.size == 249  # step 201 was the autoreset step: not a transition
    assert sac.buffer.arrays["terminated"][:249].sum() == 0
    end, first = sac.buffer.arrays["next_obs"][199], sac.buffer.arrays["obs"][200]
    assert not np.allclose(end, first)  # s' of the truncated step is its real final obs
    arrays = sac.buffer.arrays
    np.testing.assert_array_equal(arrays["obs"][1:200], arrays["next_obs"][:199])


def _sac(tmp_path, name: str, steps: int, **kw):
    return pgrad.train("sac", "Pendulum-v1", steps=steps, seed=0, run_dir=tmp_path / name,
                       hidden_sizes=[32, 32], learning_starts=200, eval_episodes=1,
                       checkpoint_every=400, **kw)  # fmt: skip


def test_a_resumed_sac_run_logs_what_an_uninterrupted_one_logs(tmp_path):
    """The replay buffer, the three optimizers, log alpha and the targets all come back."""
    reference = _sac(tmp_path, "ref", 800, log_every=100)
    _sac(tmp_path, "cut", 400, log_every=100)
    resumed = pgrad.train(resume=tmp_path / "cut", steps=800)
    assert resumed.metrics() and reference.metrics()
    ref_rows, got_rows = reference.metrics(), resumed.metrics()
    assert [r["step"] for r in got_rows] == [r["step"] for r in ref_rows]
    for a, b in zip(ref_rows, got_rows, strict=True):
        for k in a:
            assert a[k] == b[k] or (a[k] != a[k] and b[k] != b[k]), (k, a, b)


def test_sac_refuses_discrete_actions():
    with pytest.raises(pgrad.PgradError, match="continuous"):
        pgrad.train("sac", "CartPole-v1", steps=100)


def test_replay_buffer_wraps_and_restores_into_the_same_or_a_larger_capacity():
    from pgrad.replay import ReplayBuffer

    def filled(capacity: int) -> ReplayBuffer:
        buffer = ReplayBuffer(capacity, (1,), 1)
        for i in range(6):  # the oldest two are overwritten in a buffer of 4
            x = np.array([[float(i)]])
            buffer.add(obs=x, actions=x, rewards=x[:, 0], next_obs=x, terminated=x[:, 0] * 0)
        return buffer

    state = filled(4).state()
    assert state["arrays"]["rewards"].tolist() == [4.0, 5.0, 2.0, 3.0] and state["pos"] == 2
    same = ReplayBuffer(4, (1,), 1)
    same.load_state(state)
    assert same.arrays["rewards"].tolist() == [4.0, 5.0, 2.0, 3.0] and same.pos == 2
    larger = ReplayBuffer(10, (1,), 1)
    larger.load_state(state)
    assert larger.arrays["rewards"][:4].tolist() == [2.0, 3.0, 4.0, 5.0]
    assert (larger.size, larger.pos) == (4, 4)
