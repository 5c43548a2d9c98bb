"""Defaults for an env pgrad has no entry for in ``defaults.yaml``, chosen from its spaces.

The algorithm's own defaults assume what the standard envs give: observations of order 1,
rewards of order 1, actions in [-1, 1]. A user's env promises none of these, so when
``defaults.yaml`` has no entry for (algorithm, env), ``train.resolve`` adds this layer between
the algorithm's defaults and the user's config (which overrides it, key by key):

- **Reward scale** (on-policy algorithms): ``normalize_reward: true``. Rewards are divided by a
  running std of the discounted return, so returns of order 1000 (or 0.001) give the critic
  targets and the advantages of order 1. Episode returns are still reported unscaled.
- **Observation scale** (on-policy algorithms, vector observations): ``normalize_obs: true``,
  a running mean/std per coordinate. Image observations keep the CNN's own /255.
- **Action bounds** (Gaussian policies of the on-policy algorithms): the policy's mean starts
  near 0 with std ``exp(log_std_init)``, sized for [-1, 1]. Where the bounds' half-widths have a
  geometric mean s outside [0.5, 2], ``log_std_init = log s``, so the first policy explores the
  action range as it would explore [-1, 1]. A policy that squashes into the bounds (tanh,
  scaled: SAC's always, the others' with ``squash: tanh``) needs nothing, and ``train.resolve``
  drops this key for it.

A3C is left out (its workers keep no shared normalisation statistics), as is SAC's reward
scale (its entropy target is set against rewards of order 1; ``benchmarks/generic_defaults.py``
measures what that costs).
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np

from pgrad.encoders import is_image

NORMALIZING = ("reinforce", "reinforce_baseline", "actor_critic", "a2c", "ppo")
"""Algorithms that take ``normalize_obs``/``normalize_reward``, with a Gaussian head to size."""
SCALE_BAND = (0.5, 2.0)


def for_spaces(algo: str, observation_space: gym.Space, action_space: gym.Space) -> dict[str, Any]:
    """The config layer for ``algo`` on an env with these spaces (see the module docstring)."""
    if algo not in NORMALIZING:
        return {}
    layer: dict[str, Any] = {"normalize_reward": True}
    if isinstance(observation_space, gym.spaces.Box) and not is_image(observation_space):
        layer["normalize_obs"] = True
    if isinstance(action_space, gym.spaces.Box):
        half = (action_space.high.astype(np.float64) - action_space.low) / 2
        if np.all(np.isfinite(half)) and np.all(half > 0):
            scale = float(np.exp(np.log(half).mean()))
            if not SCALE_BAND[0] <= scale <= SCALE_BAND[1]:
                layer["log_std_init"] = round(math.log(scale), 4)
    return layer
