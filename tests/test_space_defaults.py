"""The generic defaults for envs without a defaults.yaml entry (``pgrad.space_defaults``): the
rules by hand, and where ``train.resolve`` puts the layer."""

import math

import numpy as np
import pytest
from gymnasium import spaces

import pgrad
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
