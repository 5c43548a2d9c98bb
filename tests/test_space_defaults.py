"""The generic defaults for envs without a defaults.yaml entry (``pgrad.space_defaults``): the
rules by hand, and where ``train.resolve`` puts the layer."""

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

import pgrad
from pgrad.policies import build_model
from pgrad.space_defaults import for_spaces
from pgrad.train import resolve

VECTOR = spaces.Box(-np.inf, np.inf, (3,), np.float32)
IMAGE = spaces.Box(0, 255, (4, 84, 84), np.uint8)


def test_rules_by_hand():
    assert for_spaces("ppo", VECTOR, spaces.Discrete(2)) == {
        "normalize_reward": True, "normalize_obs": True
    }  # fmt: skip
    assert for_spaces("ppo", IMAGE, spaces.Discrete(4)) == {"normalize_reward": True}
    assert for_spaces("sac", VECTOR, spaces.Box(-5, 5, (2,))) == {}
    assert for_spaces("a3c", VECTOR, spaces.Discrete(2)) == {}
    unit = spaces.Box(-1, 1, (2,), np.float32)
    assert "log_std_init" not in for_spaces("a2c", VECTOR, unit)
    assert "log_std_init" not in for_spaces("a2c", VECTOR, spaces.Box(-2, 2, (2,)))  # in band
    wide = for_spaces("ppo", VECTOR, spaces.Box(-5, 5, (2,), np.float32))
    assert wide["log_std_init"] == pytest.approx(math.log(5), abs=1e-4)
    # Half-widths 0.1 and 0.4: their geometric mean is 0.2.
    mixed = spaces.Box(np.array([0.0, -0.4]), np.array([0.2, 0.4]), dtype=np.float32)
    assert for_spaces("ppo", VECTOR, mixed)["log_std_init"] == pytest.approx(math.log(0.2), 1e-3)
    unbounded = spaces.Box(-np.inf, np.inf, (2,), np.float32)
    assert "log_std_init" not in for_spaces("ppo", VECTOR, unbounded)


def test_resolve_uses_the_layer_only_without_an_entry_and_below_the_user():
    shipped = resolve("ppo", "CartPole-v1")  # has an entry: the layer does not apply
    assert not shipped.normalize_obs and not shipped.normalize_reward
    generic = resolve("ppo", "MountainCarContinuous-v0", None, None, None, [])  # has an entry
    assert generic.std == "gsde"
    unseen = resolve("reinforce", "Pendulum-v1")  # no reinforce entry for Pendulum
    assert unseen.normalize_obs and unseen.normalize_reward and unseen.log_std_init == 0.0
    assert not resolve("reinforce", "Pendulum-v1", sets=["normalize_obs=false"]).normalize_obs


def test_an_unseen_env_trains_with_the_layer_recorded_in_its_config(tmp_path):
    run = pgrad.train("reinforce", "Pendulum-v1", steps=400, seed=0, run_dir=tmp_path / "r",
                      eval_episodes=1)  # fmt: skip
    text = (run.path / "config.yaml").read_text()
    assert "normalize_obs: true" in text and "normalize_reward: true" in text


class WideBounds(gym.Env):
    """Actions in [-10, 10]^2: half-width 10, outside the band the generic defaults leave alone."""

    observation_space = spaces.Box(-1.0, 1.0, (3,), np.float32)
    action_space = spaces.Box(-10.0, 10.0, (2,), np.float32)

    def reset(self, *, seed=None, options=None):
        return np.zeros(3, np.float32), {}

    def step(self, action):
        return np.zeros(3, np.float32), 0.0, False, True, {}


gym.register("WideBounds-v0", entry_point=WideBounds)


def test_a_tanh_squash_keeps_the_unit_std_on_wide_bounds():
    """The squash maps [-1, 1] onto the bounds already, so the layer's log_std_init = log 10
    would start nearly every action at a bound. Without it, u ~ N(~0, 1) at the start and
    P(|tanh u| > 0.99) = P(|u| > atanh 0.99) = erfc(atanh(0.99) / sqrt 2) = 0.0081."""
    assert resolve("ppo", "WideBounds-v0").log_std_init == pytest.approx(math.log(10), abs=1e-4)
    squashed = resolve("ppo", "WideBounds-v0", sets=["squash=tanh"])
    assert squashed.log_std_init == 0.0
    assert squashed.normalize_obs and squashed.normalize_reward  # the rest of the layer stays
    chosen = resolve("ppo", "WideBounds-v0", sets=["squash=tanh", "log_std_init=-1"])
    assert chosen.log_std_init == -1.0  # the user's own value is kept

    torch.manual_seed(0)
    model = build_model(squashed, WideBounds.observation_space, WideBounds.action_space, True)
    with torch.no_grad():
        actions = model.actor.distribution(torch.zeros(20_000, 3)).sample()
    near_bound = (actions.abs() > 0.99 * 10).float().mean().item()
    expected = math.erfc(math.atanh(0.99) / math.sqrt(2))
    assert expected == pytest.approx(0.0081, abs=1e-4)
    assert near_bound == pytest.approx(expected, abs=0.003)
