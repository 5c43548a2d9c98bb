"""Generalized state-dependent exploration (gSDE): its density, its held noise, its training;
unsquashed (A2C, PPO) and tanh-squashed (SAC)."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from pgrad.algos.a2c import A2C, A2CConfig
from pgrad.algos.sac import SAC, SACConfig
from pgrad.envs import make_vec_env
from pgrad.fast import acting_policy
from pgrad.policies import ActorCritic, GaussianPolicy, gsde_variance

OBS = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
ACTIONS = gym.spaces.Box(-2.0, 2.0, (2,), np.float32)


def _policy(sample_every: int = 0, squash: str | None = None) -> GaussianPolicy:
    torch.manual_seed(0)
    policy = GaussianPolicy(
        OBS, ACTIONS, std="gsde", log_std_init=-1.0, hidden_sizes=(8,),
        gsde_sample_every=sample_every, squash=squash,
    )  # fmt: skip
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return policy


def test_variance_by_hand():
    z = torch.tensor([[1.0, -2.0]])
    log_std = torch.log(torch.tensor([[0.5, 1.0, 2.0], [0.1, 3.0, 0.0001]]))
    expected = torch.tensor([[1 * 0.25 + 4 * 0.01, 1 * 1 + 4 * 9, 1 * 4 + 4 * 1e-8]]) + 1e-6
    assert torch.allclose(gsde_variance(z, log_std), expected, rtol=1e-5)


@pytest.mark.parametrize("path", ["numpy", "torch"])
def test_actions_for_one_state_follow_the_density_log_prob_uses(path):
    """Over many draws of theta (one per env), a = mu + theta^T z(s) is N(mu(s), v(s)); the
    log-prob stored with each action is that density's."""
    policy = _policy()
    model = ActorCritic(policy, OBS, hidden_sizes=(8,))
    obs = np.repeat(OBS.sample()[None], 40_000, axis=0)
    with torch.no_grad():
        dist = policy.distribution(torch.as_tensor(obs[:1]))
    mean, std = dist.mean[0].numpy(), dist.stddev[0].numpy()
    if path == "numpy":
        actions, log_probs, _ = acting_policy(model, np.random.default_rng(0))(obs)
    else:
        actions = policy.act(torch.as_tensor(obs)).numpy()
        log_probs = dist.log_prob(torch.as_tensor(actions)).numpy()
    n = len(actions)
    assert np.all(np.abs(actions.mean(0) - mean) < 4 * std / np.sqrt(n))
    assert np.allclose(actions.std(0), std, rtol=0.03)
    with torch.no_grad():
        expected = policy.distribution(torch.as_tensor(obs[:64])).log_prob(
            torch.as_tensor(actions[:64])
        )
    assert np.allclose(log_probs[:64], expected.numpy(), atol=1e-4)
    if path == "numpy":  # evaluation: the mean action
        greedy, _, _ = acting_policy(model, np.random.default_rng(0))(obs[:8], deterministic=True)
    else:
        greedy = policy.act(torch.as_tensor(obs[:8]), deterministic=True).numpy()
    assert np.allclose(greedy, np.broadcast_to(mean, greedy.shape), atol=1e-5)


@pytest.mark.parametrize("path", ["numpy", "torch"])
def test_the_noise_is_held_between_draws(path):
    """theta stays for a rollout (``sample_every`` 0) or for ``sample_every`` steps; held noise
    is linear in z(s): the same state gets the same action again."""
    for every, repeats in [(0, 5), (3, 3)]:
        policy = _policy(every)
        fast = acting_policy(policy, np.random.default_rng(1))
        obs = np.stack([OBS.sample() for _ in range(4)])

        def act(policy=policy, fast=fast, obs=obs):
            if path == "numpy":
                return fast(obs)[0]
            return policy.act(torch.as_tensor(obs)).numpy()

        first = act()
        for _ in range(repeats - 1):
            assert np.array_equal(act(), first)
        if path == "numpy":
            fast.refresh()  # a new rollout
        else:
            policy.noise = None
        second = act()
        assert not np.allclose(second, first)
        if every:  # without a refresh, the draw after ``every`` steps is new as well
            for _ in range(every - 1):
                assert np.array_equal(act(), second)
            assert not np.allclose(act(), second)


@pytest.mark.parametrize("path", ["numpy", "torch"])
def test_squashed_actions_and_log_prob_by_hand(path):
    """SAC's gSDE: a = loc + scale tanh(u), u = mu(s) + theta^T z(s). Over draws of theta,
    u ~ N(mu(s), v(s)) with v_j = sum_i z_i^2 sigma_ij^2 + 1e-6, and log pi(a|s) =
    sum_j [log N(u_j; mu_j, v_j) - log(scale_j (1 - tanh(u_j)^2))], all computed here."""
    policy = _policy(squash="tanh")
    obs = np.repeat(OBS.sample()[None], 40_000, axis=0)
    with torch.no_grad():
        z = policy.body(policy.encoder(torch.as_tensor(obs[:1]))).double().numpy()[0]
        mu = policy.mean(torch.as_tensor(z[None]).float()).double().numpy()[0]
    sigma = policy.log_std.detach().double().exp().numpy()
    v = (z[:, None] ** 2 * sigma**2).sum(0) + 1e-6
    scale = 2.0  # ACTIONS: [-2, 2]
    if path == "numpy":
        actions, log_probs, _ = acting_policy(policy, np.random.default_rng(0))(obs)
    else:
        actions = policy.act(torch.as_tensor(obs)).numpy()
        with torch.no_grad():
            dist = policy.distribution(torch.as_tensor(obs))
            log_probs = dist.log_prob(torch.as_tensor(actions)).numpy()
    assert np.all(np.abs(actions) <= scale)
    u = np.arctanh(actions.astype(np.float64) / scale)
    n = len(u)
    assert np.all(np.abs(u.mean(0) - mu) < 4 * np.sqrt(v / n))
    assert np.allclose(u.std(0), np.sqrt(v), rtol=0.03)
    expected = (
        -0.5 * (u - mu) ** 2 / v - 0.5 * np.log(2 * np.pi * v)
        - np.log(scale * (1 - np.tanh(u) ** 2))
    ).sum(-1)  # fmt: skip
    inside = np.all(np.abs(actions) < 0.99 * scale, -1)  # atanh's round trip stays exact there
    assert inside.mean() > 0.9
    assert np.allclose(log_probs[inside], expected[inside], atol=2e-3)
    if path == "numpy":  # evaluation: the squashed mean
        greedy, _, _ = acting_policy(policy, np.random.default_rng(0))(obs[:8], deterministic=True)
    else:
        greedy = policy.act(torch.as_tensor(obs[:8]), deterministic=True).numpy()
    assert np.allclose(greedy, scale * np.tanh(mu), atol=1e-5)


@pytest.mark.parametrize("fast", [True, False])
def test_sac_holds_the_noise_for_a_round_of_train_freq_steps(fast):
    """With 2 body features and one action, the held theta is 2 numbers per env: solved from a
    round's first two steps, it predicts that round's other steps exactly, and not the next
    round's (a new theta). u is read back from the replay buffer: u = atanh(stored action)."""
    envs = make_vec_env("Pendulum-v1", 2)
    config = SACConfig(
        n_envs=2, std="gsde", log_std_init=0.0, hidden_sizes=(2,), activation="tanh", train_freq=4,
        learning_starts=0, steps=1000, fast=fast,
    )  # fmt: skip
    algo = SAC(config, envs, seed=0)
    algo.update = lambda batch: torch.zeros(len(SAC.METRICS))  # keep the weights fixed
    algo.iterate()
    algo.iterate()
    actor, buffer = algo.model.actor, algo.buffer
    assert buffer.size == 16  # 2 rounds x 4 steps x 2 envs, rows in step order, env by env
    obs = buffer.tensors["obs"][:16]
    with torch.no_grad():
        z = actor.body(actor.encoder(obs)).double().numpy()
        mu = actor.mean(actor.body(actor.encoder(obs))).double().numpy()[:, 0]
    u = np.arctanh(buffer.tensors["actions"][:16, 0].double().numpy())
    for env in range(2):
        rows = np.arange(env, 16, 2)  # this env's 8 steps
        first, second = rows[:4], rows[4:]
        theta = np.linalg.solve(z[first[:2]], (u - mu)[first[:2]])
        assert np.allclose(z[first] @ theta, (u - mu)[first], atol=1e-4)
        assert not np.allclose(z[second] @ theta, (u - mu)[second], atol=1e-2)
        theta2 = np.linalg.solve(z[second[:2]], (u - mu)[second[:2]])
        assert np.allclose(z[second] @ theta2, (u - mu)[second], atol=1e-4)
    envs.close()


@pytest.mark.parametrize("path", ["numpy", "torch"])
def test_sacs_gsde_mean_is_clamped_to_two_before_the_squash(path):
    """mu(s) pushed to +-5 acts (deterministically) as loc + scale tanh(+-2), and its held
    noise rides on the clamped mean: u - 2 = theta^T z(s) exactly."""
    from pgrad.critics import SACModel

    actor = SACModel(SACConfig(std="gsde", hidden_sizes=(8,)), OBS, ACTIONS).actor
    with torch.no_grad():
        actor.mean.weight.zero_()
        actor.mean.bias.copy_(torch.tensor([5.0, -5.0]))
    obs = np.stack([OBS.sample() for _ in range(4)])
    if path == "numpy":
        fast = acting_policy(actor, np.random.default_rng(0))
        greedy, sampled = fast(obs, deterministic=True)[0], fast(obs)[0]
        noise = fast.noise
    else:
        greedy = actor.act(torch.as_tensor(obs), deterministic=True).numpy()
        sampled = actor.act(torch.as_tensor(obs)).numpy()
        noise = actor.noise.numpy()
    assert np.allclose(greedy, np.broadcast_to([2 * np.tanh(2.0), -2 * np.tanh(2.0)], (4, 2)))
    with torch.no_grad():
        z = actor.body(actor.encoder(torch.as_tensor(obs))).double().numpy()
    u = np.arctanh(sampled.astype(np.float64) / 2.0)
    assert np.allclose(u - [2.0, -2.0], np.einsum("bi,bij->bj", z, noise), atol=1e-3)


def test_sacs_gsde_variance_trains_the_features_and_a2cs_does_not():
    """d log sigma_j(s) / d z_i = z_i sigma_ij^2 / v_j(s) (log sigma = log v / 2), by hand, for
    SAC's policy (as Stable-Baselines3's SAC); none for A2C/PPO's (z detached)."""
    from pgrad.critics import SACModel

    sac = SACModel(SACConfig(std="gsde", hidden_sizes=(8,), log_std_init=-1.0), OBS, ACTIONS)
    z = torch.randn(1, 8, dtype=torch.float32, requires_grad=True)
    log_std = sac.actor.head(z).base.log_std
    (grad,) = torch.autograd.grad(log_std[0, 1], z)
    sigma2 = sac.actor.log_std.detach().exp() ** 2
    v = (z.detach() ** 2 @ sigma2)[0] + 1e-6
    assert torch.allclose(grad[0], z.detach()[0] * sigma2[:, 1] / v[1], rtol=1e-4)
    a2c_log_std = _policy().head(z).log_std  # A2C/PPO: a function of sigma's parameter only
    assert torch.autograd.grad(a2c_log_std.sum(), z, allow_unused=True) == (None,)


def test_sac_with_gsde_trains_sigma():
    envs = make_vec_env("Pendulum-v1", 1)
    config = SACConfig(std="gsde", log_std_init=-2.0, hidden_sizes=(16, 16), learning_starts=8,
                       batch_size=8, steps=1000)  # fmt: skip
    algo = SAC(config, envs, seed=0)
    log_std = algo.model.actor.log_std
    assert log_std.shape == (16, 1)  # features x actions
    before = log_std.detach().clone()
    for _ in range(12):
        metrics = algo.iterate()
    assert np.isfinite(metrics["actor_loss"]) and np.isfinite(metrics["entropy"])
    assert not torch.equal(log_std.detach(), before)
    envs.close()


def test_a2c_with_gsde_trains_the_exploration_matrix():
    envs = make_vec_env("Pendulum-v1", 4)
    config = A2CConfig(n_envs=4, n_steps=8, std="gsde", log_std_init=-2.0, learning_rate=1e-2)
    algo = A2C(config, envs, seed=0)
    assert algo.fast_loss is None  # gSDE trains through autograd
    log_std = algo.model.actor.log_std
    assert log_std.shape == (64, 1)
    before = log_std.detach().clone()
    for _ in range(5):
        metrics = algo.iterate()
    assert np.isfinite(metrics["policy_loss"])
    assert not torch.equal(log_std.detach(), before)
    envs.close()


def test_a2c_with_gsde_runs_and_evaluates(tmp_path):
    import pgrad

    run = pgrad.train(
        "a2c", "Pendulum-v1", steps=2000, seed=0, run_dir=tmp_path / "r", std="gsde",
        log_std_init=-2.0, eval_episodes=2,
    )  # fmt: skip
    assert np.isfinite(run.summary["mean_return"])
    assert pgrad.load(tmp_path / "r").evaluate(episodes=1).shape == (1,)
