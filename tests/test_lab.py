"""The lab's closed forms and estimators against independent computations."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from cli_runner import HANG_GUARD_S

from pgrad.lab import rps, tabular, variance


def _theta(mdp: tabular.TabularMDP, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(mdp.n_states, mdp.n_actions))


MDPS = [tabular.random_mdp(0), tabular.random_mdp(1, n_states=4, n_actions=2),
        tabular.short_corridor()]  # fmt: skip


@pytest.mark.parametrize("mdp", MDPS, ids=lambda m: m.name)
def test_exact_gradient_matches_finite_differences_and_autograd(mdp):
    theta = _theta(mdp, 3)
    exact = tabular.exact(mdp, theta)
    eps = 1e-6
    fd = np.zeros_like(theta)
    for idx in np.ndindex(theta.shape):
        up, down = theta.copy(), theta.copy()
        up[idx] += eps
        down[idx] -= eps
        fd[idx] = (tabular.exact(mdp, up).J - tabular.exact(mdp, down).J) / (2 * eps)
    np.testing.assert_allclose(exact.gradient, fd, atol=1e-7)
    t = torch.tensor(theta, requires_grad=True)
    tabular.objective(mdp, t).backward()
    np.testing.assert_allclose(exact.gradient, t.grad.numpy(), atol=1e-12)


def test_sampled_returns_average_to_the_exact_objective():
    mdp, theta = MDPS[0], _theta(MDPS[0], 3)
    ep = tabular.sample(mdp, theta, 20_000, np.random.default_rng(0))
    episodes = variance.Episodes(ep.rewards, np.zeros(len(ep.rewards)), ep.ends)
    g0 = variance.estimator_weights(episodes, mdp.gamma, 0.0)["total return"][episodes.starts]
    assert abs(g0.mean() - tabular.exact(mdp, theta).J) < 4 * g0.std() / np.sqrt(len(g0))


@pytest.mark.parametrize("seed", [0, 1])
def test_monte_carlo_estimators_are_unbiased_and_the_baseline_cuts_variance(seed):
    mdp = tabular.random_mdp(seed)
    theta = _theta(mdp, seed + 10)
    exact = tabular.exact(mdp, theta).gradient.ravel()
    g = variance.tabular_gradients(mdp, theta, 8000, np.random.default_rng(seed))
    for name in ["total return", "reward-to-go", "reward-to-go - V", "total return - b*"]:
        mean = g[name].mean(0)
        se = g[name].std(0, ddof=1) / np.sqrt(len(g[name]))
        z = np.abs(mean - exact) / se
        assert z.max() < 4.5, (name, z.max())  # 15 components: max |z| < 4.5 is p > 0.999
    var = {k: v.var(0, ddof=1).sum() for k, v in g.items()}
    assert var["reward-to-go - V"] < 0.7 * var["reward-to-go"]
    assert var["reward-to-go"] < var["total return"]
    assert var["total return - b*"] < var["total return"]


def test_td0_is_biased_with_an_inexact_critic_and_unbiased_with_the_exact_one():
    mdp = tabular.random_mdp(2)
    theta = _theta(mdp, 5)
    exact = tabular.exact(mdp, theta)
    rng = np.random.default_rng(0)
    wrong = exact.V + rng.normal(scale=3.0, size=mdp.n_states)  # a critic off by ~3
    for critic, biased in [(wrong, True), (exact.V, False)]:
        g = variance.tabular_gradients(mdp, theta, 16_000, rng, values=critic)["TD(0)"]
        rows = variance.measure({"TD(0)": g}, exact.gradient.ravel())
        if biased:
            # |bias| of an unbiased estimate is ~1 noise floor; 4 floors is a real bias
            assert rows[0].bias > 4 * rows[0].noise_floor
        else:
            assert rows[0].bias < 3 * rows[0].noise_floor


def test_policy_gradient_mixes_and_greedy_is_exploited():
    pg, greedy = rps.policy_gradient(rounds=2000), rps.greedy(rounds=2000)
    assert pg.exploitability[:10].mean() > 0.3  # starts far from uniform
    assert pg.exploitability[-200:].mean() < 0.02
    assert greedy.exploitability[-200:].mean() > 0.99
    assert rps.exploitability(np.full(3, 1 / 3)) == pytest.approx(0.0, abs=1e-12)


def test_lab_commands_write_results_and_plots(tmp_path):
    def lab(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "pgrad", "lab", *args], capture_output=True,
                              text=True, timeout=HANG_GUARD_S)  # fmt: skip

    done = lab("variance", "--env", "CartPole-v1", "--samples", "100", "--reference", "200",
               "--train-steps", "5000", "--out", str(tmp_path / "v"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    results = json.loads((tmp_path / "v" / "results.json").read_text())
    rows = {r["estimator"]: r for r in results["rows"]}
    assert rows["reward-to-go - V"]["variance_vs_reinforce"] < 1.0
    assert (
        rows["GAE(0.95)"]["variance_vs_reinforce"]
        < rows["reward-to-go - V"]["variance_vs_reinforce"]
    )
    assert (tmp_path / "v" / "bias_variance.png").stat().st_size > 10_000
    done = lab("rps", "--rounds", "500", "--out", str(tmp_path / "r"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "r" / "rps.png").stat().st_size > 10_000
    bad = lab("variance", "--env", "NoSuchEnv-v0", "--out", str(tmp_path / "x"))
    assert bad.returncode == 2 and "unknown env id" in bad.stderr


def test_gym_table_fits_a_critic_for_a_policy_without_one(tmp_path):
    """Plain REINFORCE has no critic: the lab fits V to Monte Carlo returns (under the sampling's
    no_grad it once could not backpropagate), and the fitted baseline cuts the variance."""
    import pgrad
    from pgrad.lab import variance

    run = pgrad.train("reinforce", "CartPole-v1", steps=2000, seed=0, run_dir=tmp_path / "r",
                      eval_episodes=1)  # fmt: skip
    rows, info = variance.gym_table("CartPole-v1", run.path, 40, 80, seed=0)
    assert info["critic"] == "fitted to Monte Carlo returns"
    by_name = {r.estimator: r for r in rows}
    assert by_name["reward-to-go - V"].variance_vs_reinforce < 1.0
