"""Collecting experience from Gymnasium vector envs into a ``Batch`` of time-major tensors.

Gymnasium 1.x vector envs reset finished sub-envs themselves, in one of two modes:

- ``NEXT_STEP`` (the default, and what native vector envs such as CartPole's use): the step that
  ends an episode returns the real final observation; the *next* ``step()`` resets that sub-env,
  ignores its action and returns the first observation of the new episode with reward 0. That
  autoreset step is not a transition of the MDP: ``mask`` is False there, so it is never trained on.
- ``SAME_STEP``: the step that ends an episode already returns the reset observation and puts the
  real final observation in ``info["final_obs"]``; that is what a truncated step bootstraps from.

Either way ``next_values[t]`` is V of the true successor s_{t+1}, as ``returns`` expects.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode

from pgrad.envs import autoreset_mode
from pgrad.policies import ActorCritic, Policy, mode


@dataclass
class Batch:
    """T steps of N envs. ``mask[t, i]``: the transition (s_t, a_t, r_t, s_{t+1}) is real and
    belongs to an episode selected for training."""

    obs: torch.Tensor  # (T, N, *obs_shape): s_t, where a_t was chosen
    actions: torch.Tensor  # (T, N, *action_shape): a_t as sampled (before any clipping)
    log_probs: torch.Tensor  # (T, N): log pi(a_t|s_t) at collection time
    rewards: torch.Tensor  # (T, N)
    terminated: torch.Tensor  # (T, N) bool
    truncated: torch.Tensor  # (T, N) bool
    values: torch.Tensor  # (T, N): V(s_t) at collection time (0 without a critic)
    next_values: torch.Tensor  # (T, N): V(s_{t+1}) of the true successor (0 without a critic)
    mask: torch.Tensor  # (T, N) bool
    episode_returns: np.ndarray = field(default_factory=lambda: np.zeros(0))
    episode_lengths: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def steps(self) -> int:
        """Transitions to train on."""
        return int(self.mask.sum())


class _Storage:
    """Preallocated (T, N, ...) tensors that double in T when full."""

    def __init__(self, capacity: int):
        self.capacity, self.t = capacity, 0
        self.tensors: dict[str, torch.Tensor] = {}

    def put(self, **row: torch.Tensor) -> None:
        if not self.tensors:
            self.tensors = {
                k: torch.zeros((self.capacity, *v.shape), dtype=v.dtype) for k, v in row.items()
            }
        elif self.t == self.capacity:
            self.tensors = {k: torch.cat([v, torch.zeros_like(v)]) for k, v in self.tensors.items()}
            self.capacity *= 2
        for k, v in row.items():
            self.tensors[k][self.t] = v
        self.t += 1

    def view(self) -> dict[str, torch.Tensor]:
        return {k: v[: self.t] for k, v in self.tensors.items()}


def _final_obs(info: dict, done: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
    """Under SAME_STEP, the real last observations of the sub-envs that just ended."""
    obs = next_obs.copy()
    for i in np.flatnonzero(done & info["_final_obs"]):
        obs[i] = info["final_obs"][i]
    return obs


@torch.inference_mode()
def collect_episodes(
    envs: gym.vector.VectorEnv,
    model: Policy | ActorCritic,
    episodes_per_env: int | np.ndarray,
    deterministic: bool = False,
    seed: int | None = None,
) -> Batch:
    """Reset ``envs`` and run each sub-env until it has finished ``episodes_per_env`` episodes.

    Every sub-env's first k episodes are kept whole and everything after them is masked out, so
    which episodes are kept does not depend on their lengths (keeping "the first M episodes to
    end" instead would favour short ones and bias the gradient). An episode cut by a time limit
    counts as finished; ``next_values`` holds V of its final observation for bootstrapping.
    """
    n = envs.num_envs
    quota = np.broadcast_to(np.asarray(episodes_per_env), (n,))
    same_step = autoreset_mode(envs) == AutoresetMode.SAME_STEP
    action_shape = envs.single_action_space.shape
    obs, _ = envs.reset(seed=seed)
    finished = np.zeros(n, dtype=np.int64)
    autoreset = np.zeros(n, dtype=bool)
    running_return = np.zeros(n)
    running_length = np.zeros(n, dtype=np.int64)
    episode_returns: list[float] = []
    episode_lengths: list[int] = []
    store = _Storage(capacity=256)
    zeros = torch.zeros(n)

    while (finished < quota).any():
        obs_t = torch.as_tensor(obs, dtype=torch.float32)
        dist, value = model(obs_t)
        action = mode(dist) if deterministic else dist.sample()
        log_prob = dist.log_prob(action)
        next_obs, reward, terminated, truncated, info = envs.step(
            action.numpy().reshape(n, *action_shape)
        )
        done = terminated | truncated
        valid = (finished < quota) & ~autoreset
        next_value = zeros
        if same_step and value is not None and (done & valid).any():
            next_value = model.value(
                torch.as_tensor(_final_obs(info, done, next_obs), dtype=torch.float32)
            )
        store.put(
            obs=obs_t,
            actions=action,
            log_probs=log_prob,
            rewards=torch.as_tensor(reward, dtype=torch.float32),
            terminated=torch.as_tensor(terminated),
            truncated=torch.as_tensor(truncated),
            values=zeros if value is None else value,
            final_values=next_value,
            mask=torch.as_tensor(valid),
        )
        running_return += np.where(valid, reward, 0.0)
        running_length += valid
        for i in np.flatnonzero(done & valid):
            episode_returns.append(float(running_return[i]))
            episode_lengths.append(int(running_length[i]))
        running_return[done] = 0.0
        running_length[done] = 0
        finished += done & valid
        autoreset = done if not same_step else autoreset
        obs = next_obs

    data = store.view()
    values = data.pop("values")
    final_values = data.pop("final_values")
    last_value = zeros
    if value is not None:
        last_value = model.value(torch.as_tensor(obs, dtype=torch.float32))
    next_values = torch.cat([values[1:], last_value[None]])
    if same_step:
        ended = data["terminated"] | data["truncated"]
        next_values = torch.where(ended, final_values, next_values)
    return Batch(
        **data,
        values=values,
        next_values=next_values,
        episode_returns=np.asarray(episode_returns),
        episode_lengths=np.asarray(episode_lengths, dtype=np.int64),
    )
