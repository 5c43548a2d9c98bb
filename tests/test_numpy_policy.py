"""The NumPy acting path against the torch policies it mirrors, family by family."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from pgrad.envs import make_vec_env
from pgrad.fast import acting_policy
from pgrad.policies import ActorCritic, make_policy, mode
from pgrad.rollout import Rollout

BOX = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
CASES = {
    "categorical": (BOX, gym.spaces.Discrete(4), {}),
    "multi-categorical": (BOX, gym.spaces.MultiDiscrete([2, 3]), {}),
    "gaussian-parameter-std": (BOX, gym.spaces.Box(-2.0, 2.0, (2,), np.float32), {}),
    "gaussian-state-std": (BOX, gym.spaces.Box(-2.0, 2.0, (2,)), {"std": "state"}),
    "squashed": (BOX, gym.spaces.Box(np.array([-2.0, 0.0]), np.array([2.0, 1.0])), {
        "std": "state", "squash": "tanh"}),
    "discrete-obs-relu": (gym.spaces.Discrete(5), gym.spaces.Discrete(3), {"activation": "relu"}),
}  # fmt: skip


def _model(obs_space, action_space, kwargs, shared):
    torch.manual_seed(0)
    activation = kwargs.pop("activation", "tanh")
    policy = make_policy(obs_space, action_space, activation=activation, **kwargs)
    model = ActorCritic(policy, obs_space, shared=shared, activation=activation)
    with torch.no_grad():  # away from the near-zero initial heads
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model


def _obs(space, n, seed=0):
    space.seed(seed)
    return np.stack([space.sample() for _ in range(n)])


@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("case", list(CASES))
def test_log_probs_values_and_modes_match_torch(case, shared):
    obs_space, action_space, kwargs = CASES[case]
    model = _model(obs_space, action_space, dict(kwargs), shared)
    fast = acting_policy(model, np.random.default_rng(0))
    assert fast is not None
    obs = _obs(obs_space, 64)
    with torch.no_grad():
        dist, value = model(torch.as_tensor(obs, dtype=torch.float32))
        actions, log_probs, values = fast(obs)
        expected = dist.log_prob(torch.as_tensor(actions)).numpy()
        comparable = np.ones(len(obs), dtype=bool)
        if kwargs.get("squash"):
            # torch recovers u by atanh of the action, which float32 cannot do where tanh(u)
            # rounds to +-1; NumPy has u itself. Compare where the inverse is well conditioned.
            y = (actions - model.actor.loc.numpy()) / model.actor.scale.numpy()
            comparable = (np.abs(y) < 0.999).all(-1)
            assert comparable.sum() > 10
        assert np.allclose(log_probs[comparable], expected[comparable], atol=1e-4)
        assert np.allclose(values, value.numpy(), atol=1e-5)
        assert np.allclose(fast.value(obs), value.numpy(), atol=1e-5)
        greedy, _, _ = fast(obs, deterministic=True)
        assert np.allclose(greedy, mode(dist).numpy(), atol=1e-5)


def test_samples_follow_the_policy_distribution():
    obs_space, action_space, kwargs = CASES["gaussian-state-std"]
    model = _model(obs_space, action_space, dict(kwargs), shared=False)
    fast = acting_policy(model, np.random.default_rng(1))
    obs = np.repeat(_obs(obs_space, 1), 20_000, axis=0)
    actions, _, _ = fast(obs)
    with torch.no_grad():
        dist = model.distribution(torch.as_tensor(obs[:1]))
    std = dist.stddev[0].numpy()
    assert np.all(np.abs(actions.mean(0) - dist.mean[0].numpy()) < 4 * std / np.sqrt(20_000))
    assert np.allclose(actions.std(0), std, rtol=0.03)

    obs_space, action_space, kwargs = CASES["categorical"]
    model = _model(obs_space, action_space, dict(kwargs), shared=False)
    fast = acting_policy(model, np.random.default_rng(2))
    actions, _, _ = fast(obs)
    with torch.no_grad():
        probs = model.distribution(torch.as_tensor(obs[:1])).probs[0].numpy()
    freq = np.bincount(actions, minlength=4) / len(actions)
    assert np.all(np.abs(freq - probs) < 4 * np.sqrt(probs * (1 - probs) / len(actions)))


@pytest.mark.parametrize("shared", [False, True])
def test_parameter_updates_show_through_after_refresh(shared):
    obs_space, action_space, kwargs = CASES["categorical"]
    model = _model(obs_space, action_space, dict(kwargs), shared=shared)
    fast = acting_policy(model, np.random.default_rng(0))
    assert (fast.side_by_side is None) == shared  # separate bodies run side by side
    obs = _obs(obs_space, 8)
    with torch.no_grad():
        model.value_head.bias.add_(5.0)
        fast.refresh()
        assert np.allclose(fast.value(obs), model.value(torch.as_tensor(obs)).numpy(), atol=1e-5)


def test_each_rollout_acts_with_the_current_parameters():
    envs = make_vec_env("CartPole-v1", 4)
    model = _model(envs.single_observation_space, envs.single_action_space, {}, shared=False)
    rollout = Rollout(envs, n_steps=16, seed=0)
    for _ in range(2):
        batch = rollout.collect(model)
        with torch.no_grad():
            dist, values = model(batch.obs.flatten(0, 1))
            log_probs = dist.log_prob(batch.actions.flatten(0, 1))
        assert torch.allclose(batch.log_probs.flatten(), log_probs, atol=1e-5)
        assert torch.allclose(batch.values.flatten(), values, atol=1e-5)
        with torch.no_grad():  # an update in place, as the optimizer makes it
            for p in model.parameters():
                p.add_(0.5 * torch.randn_like(p))


def test_unknown_parts_fall_back_to_torch():
    model = ActorCritic(make_policy(BOX, gym.spaces.Discrete(2), activation="gelu"), BOX)
    assert acting_policy(model, np.random.default_rng(0)) is None
    envs = make_vec_env("CartPole-v1", 2)
    model = ActorCritic(
        make_policy(envs.single_observation_space, envs.single_action_space, activation="gelu"),
        envs.single_observation_space,
        activation="gelu",
    )
    batch = Rollout(envs, n_steps=4, seed=0).collect(model)
    with torch.no_grad():
        dist, values = model(batch.obs.reshape(-1, 4))
    assert torch.allclose(dist.log_prob(batch.actions.reshape(-1)), batch.log_probs.reshape(-1))
    assert torch.allclose(values, batch.values.reshape(-1))
