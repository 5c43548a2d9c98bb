"""Small envs pgrad has no defaults for, each testing one thing the generic defaults must cope
with (``benchmarks/generic_defaults.py`` trains on them; ``custom_envs:ID`` names them):

- ``SparseCorridor-v0``: 12 cells in a row, start in the first; left/right; reward 1 only on
  reaching the last cell (the episode ends), 0 otherwise, 100 steps at most. A random walk
  reaches the goal in about half of its episodes. Solved: mean return >= 0.95.
- ``WideTarget-v0``: the observation is a target in [-4, 4], the action a number in [-5, 5]
  (not [-1, 1]); reward -|action - target|, a new target each step, 20 steps. A policy that
  ignores the target scores about -40. Solved: >= -4 (within 0.2 of the target on average).
- ``BigReward-v0``: CartPole-v1 with every reward multiplied by 1000 (returns up to 500,000).
  Solved: >= 475,000, CartPole's threshold x 1000.
- ``TinyActions-v0``: WideTarget's task scaled down 25x: targets in [-0.16, 0.16], actions in
  [-0.2, 0.2], reward -|action - target| x 25 (so the same -40 / -4 scale). Solved: >= -4.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class SparseCorridor(gym.Env):
    CELLS, LIMIT = 12, 100

    def __init__(self):
        self.observation_space = spaces.Box(0.0, 1.0, (1,), np.float32)
        self.action_space = spaces.Discrete(2)

    def _obs(self) -> np.ndarray:
        return np.array([self.cell / (self.CELLS - 1)], np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.cell, self.t = 0, 0
        return self._obs(), {}

    def step(self, action):
        self.cell = min(max(self.cell + (1 if action == 1 else -1), 0), self.CELLS - 1)
        self.t += 1
        goal = self.cell == self.CELLS - 1
        return self._obs(), float(goal), goal, self.t >= self.LIMIT and not goal, {}


class WideTarget(gym.Env):
    STEPS = 20

    def __init__(self, scale: float = 1.0):
        self.scale = scale
        self.observation_space = spaces.Box(-4.0 * scale, 4.0 * scale, (1,), np.float32)
        self.action_space = spaces.Box(-5.0 * scale, 5.0 * scale, (1,), np.float32)

    def _draw(self) -> np.ndarray:
        self.target = self.np_random.uniform(-4.0, 4.0) * self.scale
        return np.array([self.target], np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._draw(), {}

    def step(self, action):
        reward = -abs(float(np.asarray(action).reshape(-1)[0]) - self.target) / self.scale
        self.t += 1
        return self._draw(), reward, False, self.t >= self.STEPS, {}


gym.register("SparseCorridor-v0", entry_point=SparseCorridor)
gym.register("WideTarget-v0", entry_point=WideTarget)
gym.register("TinyActions-v0", entry_point=WideTarget, kwargs={"scale": 0.04})
gym.register(
    "BigReward-v0",
    entry_point=lambda **kw: gym.wrappers.TransformReward(
        gym.make("CartPole-v1", **kw), lambda r: 1000.0 * r
    ),
    max_episode_steps=None,
)
