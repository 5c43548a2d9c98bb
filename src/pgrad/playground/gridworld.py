"""A 5x5 gridworld: walk from the top-left corner to the goal, around the lava.

Observation: the agent's cell as a one-hot vector (25 floats). Actions: up, right, down, left
(a move into the border leaves the agent where it is). Reward: +1 on reaching the goal, -1 on
stepping into lava (both end the episode), 0 otherwise; 50 steps at most. The discount is what
makes the short path better than a long one.

Registered as ``pgrad.playground.gridworld:GridWorld-v0``: the ``module:`` prefix makes
``pgrad eval``/``report`` import this module, so a downloaded run loads anywhere pgrad does.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

ENV_ID = "pgrad.playground.gridworld:GridWorld-v0"
SIZE = 5
START, GOAL = (0, 0), (4, 4)
LAVA = frozenset({(1, 1), (1, 3), (3, 1), (3, 2)})
MOVES = ((-1, 0), (0, 1), (1, 0), (0, -1))  # up, right, down, left as (row, column)
CELL = 48
COLORS = {"floor": (236, 239, 244), "lava": (231, 111, 81), "goal": (42, 157, 143),
          "agent": (38, 70, 83), "line": (200, 205, 214)}  # fmt: skip


class GridWorld(gym.Env):
    """The gridworld of the module docstring."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 8}

    def __init__(self, render_mode: str | None = None):
        self.observation_space = gym.spaces.Box(0.0, 1.0, (SIZE * SIZE,), np.float32)
        self.action_space = gym.spaces.Discrete(4)
        self.render_mode = render_mode
        self.position = START

    def _obs(self) -> np.ndarray:
        obs = np.zeros(SIZE * SIZE, np.float32)
        obs[self.position[0] * SIZE + self.position[1]] = 1.0
        return obs

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.position = START
        return self._obs(), {}

    def step(self, action: Any):
        dr, dc = MOVES[int(action)]
        row = min(max(self.position[0] + dr, 0), SIZE - 1)
        col = min(max(self.position[1] + dc, 0), SIZE - 1)
        self.position = (row, col)
        reward = 1.0 if self.position == GOAL else -1.0 if self.position in LAVA else 0.0
        return self._obs(), reward, reward != 0.0, False, {}

    def render(self) -> np.ndarray:
        """The grid as an RGB array: lava red, goal green, the agent a dark square."""
        image = np.empty((SIZE * CELL, SIZE * CELL, 3), np.uint8)
        for row in range(SIZE):
            for col in range(SIZE):
                kind = "lava" if (row, col) in LAVA else "goal" if (row, col) == GOAL else "floor"
                cell = image[row * CELL : (row + 1) * CELL, col * CELL : (col + 1) * CELL]
                cell[:] = COLORS[kind]
                cell[0, :] = cell[:, 0] = COLORS["line"]
        row, col = self.position
        top, left, pad = row * CELL, col * CELL, CELL // 4
        image[top + pad : top + CELL - pad, left + pad : left + CELL - pad] = COLORS["agent"]
        return image


gym.register("GridWorld-v0", entry_point=GridWorld, max_episode_steps=50)
