"""A replay buffer of transitions (s, a, r, s', terminated) for off-policy algorithms (SAC).

Storage is allocated once, as tensors whose NumPy views take the writes (one NumPy assignment
per vector-env step); sampling gathers a minibatch with one index op per field. On a GPU the
tensors live there (written with one copy per field and step), so minibatches never cross the
bus; the sampled indices come from the CPU generator either way, so a run's draws do not depend
on the device. Observations keep the dtype the caller gives (``uint8`` for pixels: a quarter
of float32's memory, scaled by the encoder when read). ``terminated`` is stored and
``truncated`` is not: a time-limit cut is not the end of the MDP, so its target
still bootstraps from V(s'), and s' is the real final observation of the episode.
"""

from __future__ import annotations

import numpy as np
import torch


class ReplayBuffer:
    FIELDS = ("obs", "actions", "rewards", "next_obs", "terminated")

    def __init__(
        self,
        capacity: int,
        obs_shape: tuple[int, ...],
        action_dim: int,
        device: torch.device | str = "cpu",
        obs_dtype: torch.dtype | np.dtype | type = torch.float32,
    ):
        self.capacity, self.size, self.pos = capacity, 0, 0
        if not isinstance(obs_dtype, torch.dtype):  # a NumPy one: np.uint8 -> torch.uint8
            obs_dtype = getattr(torch, np.dtype(obs_dtype).name)
        self.device = torch.device(device)
        shapes = {
            "obs": obs_shape,
            "actions": (action_dim,),
            "rewards": (),
            "next_obs": obs_shape,
            "terminated": (),
        }
        dtypes = {"obs": obs_dtype, "next_obs": obs_dtype}
        self.tensors = {
            k: torch.zeros((capacity, *v), dtype=dtypes.get(k, torch.float32), device=device)
            for k, v in shapes.items()
        }
        on_cpu = self.device.type == "cpu"
        self.arrays = {k: v.numpy() for k, v in self.tensors.items()} if on_cpu else None

    def add(self, **rows: np.ndarray) -> None:
        """Append a batch of transitions (one per row), overwriting the oldest when full."""
        n = len(rows["rewards"])
        idx = (self.pos + np.arange(n)) % self.capacity
        for k in self.FIELDS:
            if self.arrays is not None:
                self.arrays[k][idx] = rows[k]
            else:
                tensor = self.tensors[k]
                row = torch.as_tensor(np.ascontiguousarray(rows[k])).to(tensor.device, tensor.dtype)
                tensor[torch.from_numpy(idx).to(self.device)] = row
        self.pos = int((self.pos + n) % self.capacity)
        self.size = min(self.size + n, self.capacity)

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> dict:
        """A uniform minibatch (with replacement) of the stored transitions."""
        idx = torch.randint(0, self.size, (batch_size,), generator=generator).to(self.device)
        return {k: v[idx] for k, v in self.tensors.items()}

    def state(self) -> dict:
        """The filled part, the write position and the capacity (for an exact resume)."""
        return {
            "size": self.size,
            "pos": self.pos,
            "capacity": self.capacity,
            "arrays": {k: v[: self.size].cpu().numpy().copy() for k, v in self.tensors.items()},
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
            v = v if same or size < state["capacity"] else np.roll(v, -pos, 0)
            self.tensors[k][:size] = torch.as_tensor(v).to(self.device)
        self.size = size
        self.pos = pos if same else size % self.capacity
