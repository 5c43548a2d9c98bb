"""A replay buffer of transitions (s, a, r, s', terminated) for off-policy algorithms (SAC).

Storage is allocated once, as tensors whose NumPy views take the writes (one NumPy assignment
per vector-env step); sampling gathers a minibatch with one index op per field. ``terminated``
is stored and ``truncated`` is not: a time-limit cut is not the end of the MDP, so its target
still bootstraps from V(s'), and s' is the real final observation of the episode.
"""

from __future__ import annotations

import numpy as np
import torch


class ReplayBuffer:
    FIELDS = ("obs", "actions", "rewards", "next_obs", "terminated")

    def __init__(self, capacity: int, obs_shape: tuple[int, ...], action_dim: int):
        self.capacity, self.size, self.pos = capacity, 0, 0
        shapes = {
            "obs": obs_shape,
            "actions": (action_dim,),
            "rewards": (),
            "next_obs": obs_shape,
            "terminated": (),
        }
        self.tensors = {k: torch.zeros((capacity, *v)) for k, v in shapes.items()}
        self.arrays = {k: v.numpy() for k, v in self.tensors.items()}

    def add(self, **rows: np.ndarray) -> None:
        """Append a batch of transitions (one per row), overwriting the oldest when full."""
        n = len(rows["rewards"])
        idx = (self.pos + np.arange(n)) % self.capacity
        for k in self.FIELDS:
            self.arrays[k][idx] = rows[k]
        self.pos = int((self.pos + n) % self.capacity)
        self.size = min(self.size + n, self.capacity)

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> dict:
        """A uniform minibatch (with replacement) of the stored transitions."""
        idx = torch.randint(0, self.size, (batch_size,), generator=generator)
        return {k: v[idx] for k, v in self.tensors.items()}

    def state(self) -> dict:
        """The filled part, the write position and the capacity (for an exact resume)."""
        return {
            "size": self.size,
            "pos": self.pos,
            "capacity": self.capacity,
            "arrays": {k: v[: self.size].copy() for k, v in self.arrays.items()},
        }

    def load_state(self, state: dict) -> None:
        """Restore a saved buffer. With the same capacity, slot for slot (so sampling continues
        exactly); into a larger one (a resumed run given more steps), oldest first, as a run
        with that capacity from the start would have stored them."""
        size, pos = state["size"], state["pos"]
        if size > self.capacity:
            raise ValueError(f"a buffer of {size} transitions does not fit {self.capacity}")
        same = state["capacity"] == self.capacity
        for k, v in state["arrays"].items():
            self.arrays[k][:size] = v if same or size < state["capacity"] else np.roll(v, -pos, 0)
        self.size = size
        self.pos = pos if same else size % self.capacity
