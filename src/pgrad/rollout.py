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

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import ClassVar

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode
from torch import nn

from pgrad import device, fast
from pgrad.encoders import storage_dtype
from pgrad.envs import autoreset_mode
from pgrad.policies import ActorCritic, Policy, actor_of, mode


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

    @cached_property
    def steps(self) -> int:
        """Transitions to train on."""
        return int(self.mask.sum())

    def to(self, where: torch.device) -> Batch:
        """The batch with its tensors on ``where`` (itself if they are there already)."""
        return self if self.obs.device == where else device.moved(self, where)

    def valid(self, *tensors: torch.Tensor) -> list[torch.Tensor]:
        """Each (T, N, ...) tensor's entries where ``mask`` holds, as (steps, ...), in (t, i)
        order. (When every step is valid, a reshape instead of a masked copy.)"""
        flat = [x.reshape(-1, *x.shape[2:]) for x in tensors]
        if self.steps == self.mask.numel():
            return flat
        return [x.index_select(0, self._valid_index) for x in flat]

    @cached_property
    def _valid_index(self) -> torch.Tensor:
        return self.mask.reshape(-1).nonzero().squeeze(1)


class _Storage:
    """Preallocated (T, N, ...) arrays that double in T when full.

    Rows are written through NumPy views of the tensors (a NumPy assignment costs a fraction of a
    torch indexing op); ``view()`` hands out the tensors themselves, allocated outside inference
    mode so that a ``Batch`` can feed autograd.
    """

    DTYPES: ClassVar[dict[str, type]] = {"rewards": np.float32}
    """Stored as float32 whatever the env returns; observations as ``encoders.storage_dtype``
    says (float32, or ``uint8`` images kept as bytes)."""

    def __init__(self, capacity: int):
        self.capacity, self.t = capacity, 0
        self.tensors: dict[str, torch.Tensor] = {}
        self.arrays: dict[str, np.ndarray] = {}

    def _dtype(self, key: str, row: np.ndarray) -> np.dtype:
        if key == "obs":
            return storage_dtype(row.dtype)
        return np.dtype(self.DTYPES.get(key, row.dtype))

    def _allocate(self, rows: dict[str, np.ndarray]) -> None:
        old = self.tensors
        with torch.inference_mode(False):
            self.tensors = {
                k: torch.from_numpy(np.zeros((self.capacity, *v.shape), dtype=self._dtype(k, v)))
                for k, v in rows.items()
            }
        self.arrays = {k: v.numpy() for k, v in self.tensors.items()}
        for k, v in old.items():
            self.arrays[k][: len(v)] = v.numpy()

    def put(self, **row: np.ndarray) -> None:
        if not self.tensors:
            self._allocate(row)
        elif self.t == self.capacity:
            self.capacity *= 2
            self._allocate(row)
        for k, v in row.items():
            self.arrays[k][self.t] = v
        self.t += 1

    def view(self) -> dict[str, torch.Tensor]:
        if self.t == self.capacity:  # fixed-length rollouts: no slicing needed
            return dict(self.tensors)
        return {k: v[: self.t] for k, v in self.tensors.items()}


def episode_stats(returns: Sequence[float], lengths: Sequence[int]) -> dict[str, float]:
    """The count, mean return and mean length of some finished episodes (NaN means if none)."""
    n = len(returns)
    return {
        "episodes": n,
        "episode_return": float(np.mean(returns)) if n else float("nan"),
        "episode_length": float(np.mean(lengths)) if n else float("nan"),
    }


def episode_metrics(batch: Batch) -> dict[str, float]:
    """Episodes that ended in ``batch``: their count, mean true return and mean length."""
    return episode_stats(batch.episode_returns, batch.episode_lengths)


@dataclass(slots=True)
class Transition:
    """One step of every sub-env: (s_t, a_t, r_t, s_{t+1}) and which of them are real."""

    obs: np.ndarray  # s_t
    action: np.ndarray
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    next_obs: np.ndarray  # as the env returned it (SAME_STEP: a reset observation where done)
    valid: np.ndarray  # a transition of the MDP, in an episode kept for training
    ended: np.ndarray  # valid, and the episode ended here
    info: dict
    finished: np.ndarray | None = None
    """Where a whole episode, as reported, ended: ``ended``, except on envs that record their
    own episodes (Atari: a lost life ends a training episode, the game ends the episode)."""

    def successors(self) -> np.ndarray:
        """s_{t+1} of every sub-env: under SAME_STEP the real last observation where an episode
        ended (``info["final_obs"]``), not the next episode's first."""
        if "_final_obs" not in self.info or not self.ended.any():
            return self.next_obs
        obs = self.next_obs.copy()
        done = self.terminated | self.truncated
        for i in np.flatnonzero(done & self.info["_final_obs"]):
            obs[i] = self.info["final_obs"][i]
        return obs


class Stepper:
    """A vector env's running state between steps: the current observations, which sub-envs
    autoreset on the next step (NEXT_STEP), and the returns of the episodes under way. The
    on-policy rollouts and SAC's transition collection both step through it.

    It acts through ``pgrad.fast``'s NumPy policy where the model allows (and ``fast``), else
    through the torch model; its NumPy generator is seeded from torch's, so a seeded run
    samples the same actions every time.
    """

    def __init__(self, envs: gym.vector.VectorEnv, fast: bool = True):
        self.envs, self.fast_enabled = envs, fast
        self.n = envs.num_envs
        # Episodes as the env records them (``info["episode"]``, e.g. Atari's whole games).
        self.recorded = bool(envs.unwrapped.metadata.get("pgrad_episode_statistics"))
        self.same_step = autoreset_mode(envs) == AutoresetMode.SAME_STEP
        self.action_shape = envs.single_action_space.shape
        self.zeros = np.zeros(self.n, dtype=np.float32)
        self.rng = np.random.default_rng(int(torch.randint(0, 2**62, ())))

    def reset(self, seed: int | None) -> None:
        self.obs, _ = self.envs.reset(seed=seed)
        self.autoreset = np.zeros(self.n, dtype=bool)
        self.running_return = np.zeros(self.n)
        self.running_length = np.zeros(self.n, dtype=np.int64)
        self.episode_returns: list[float] = []
        self.episode_lengths: list[int] = []

    STATE = ("obs", "autoreset", "running_return", "running_length", "episode_returns",
             "episode_lengths")  # fmt: skip

    def state(self) -> dict:
        """Everything a resumed run needs to continue exactly: the env's current observations,
        the episodes under way, and the sampling generator."""
        return {**{k: getattr(self, k) for k in self.STATE}, "rng": self.rng.bit_generator.state}

    def load_state(self, state: dict, envs: gym.vector.VectorEnv, env_restored: bool) -> None:
        """Continue from ``state`` in ``envs``: in the episodes under way if ``envs`` is the
        restored env the state was taken with, else in new episodes of ``envs``."""
        self.envs = envs
        self.rng.bit_generator.state = state["rng"]
        if not env_restored:  # seeded from the restored generator: the run's own seed would
            self.reset(int(self.rng.integers(2**31)))  # replay the starts it began with
            return
        for k in self.STATE:
            setattr(self, k, state[k])

    def use(self, model: Policy | ActorCritic) -> None:
        """Act with ``model`` from now on."""
        # Rebuilt only when the model or the memory under its parameters changed.
        if getattr(self, "model", None) is not model:
            self.model, self.params = model, list(model.parameters())
            self.device = device.of(model)
            self.model_key = None
        key = [p.data_ptr() for p in self.params]
        if self.model_key != key:
            self.model_key = key
            self.numpy_policy = fast.acting_policy(model, self.rng, self.fast_enabled)
        elif self.numpy_policy is not None:
            self.numpy_policy.refresh()
        self.gsde_actor = _gsde_actor(model)
        if self.numpy_policy is None and self.gsde_actor is not None:
            self.gsde_actor.noise = None  # new exploration matrices for this rollout

    def act(
        self, obs: np.ndarray, deterministic: bool
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(actions, log pi(a|s), V(s) or None) for the current observations."""
        if self.numpy_policy is not None:
            return self.numpy_policy(np.asarray(obs), deterministic)
        obs = self.tensor(obs)
        dist, value = self.model(obs)
        if deterministic:
            action = mode(dist)
        elif self.gsde_actor is not None:  # the held exploration matrices
            action = self.gsde_actor.act(obs).flatten(1)
        else:
            action = dist.sample()
        log_prob = dist.log_prob(action).cpu().numpy()
        return action.cpu().numpy(), log_prob, None if value is None else value.cpu().numpy()

    def value(self, obs: np.ndarray) -> np.ndarray:
        if self.numpy_policy is not None:
            return self.numpy_policy.value(np.asarray(obs))
        return self.model.value(self.tensor(obs)).cpu().numpy()

    def tensor(self, obs: np.ndarray) -> torch.Tensor:
        """Observations on the acting model's device, as ``encoders.storage_dtype`` says."""
        obs = np.asarray(obs)
        return torch.from_numpy(obs.astype(storage_dtype(obs.dtype), copy=False)).to(self.device)

    def transition(self, action: np.ndarray, keep: np.ndarray | bool = True) -> Transition:
        """Step every sub-env with ``action`` and keep the books: a transition is ``valid`` if
        ``keep`` and not an autoreset step; the true returns and lengths of the kept episodes
        that end are appended to ``episode_returns`` and ``episode_lengths``."""
        next_obs, reward, terminated, truncated, info = self.envs.step(action)
        done = terminated | truncated
        valid = keep & ~self.autoreset
        ended = done & valid
        step = Transition(self.obs, action, reward, terminated, truncated, next_obs, valid, ended,
                          info)  # fmt: skip
        self.running_return += np.where(valid, reward, 0.0)
        self.running_length += valid
        episode = info.get("episode")
        if self.recorded:  # the env's own episodes (Atari: whole games, their true scores)
            finished = valid & info["_episode"] if episode is not None else np.zeros_like(valid)
            returns, lengths = (episode["r"], episode["l"]) if episode is not None else ((), ())
        else:  # ours; the true return is RecordEpisodeStatistics' beneath reward normalisation
            finished = ended
            returns = episode["r"] if episode is not None else self.running_return
            lengths = self.running_length
        for i in np.flatnonzero(finished):
            self.episode_returns.append(float(returns[i]))
            self.episode_lengths.append(int(lengths[i]))
        step.finished = finished
        self.running_return[done] = 0.0
        self.running_length[done] = 0
        if not self.same_step:
            self.autoreset = done
        self.obs = next_obs
        return step

    def finished(self) -> tuple[np.ndarray, np.ndarray]:
        """The true returns and lengths of the episodes that ended since the last call."""
        out = np.asarray(self.episode_returns), np.asarray(self.episode_lengths, dtype=np.int64)
        self.episode_returns, self.episode_lengths = [], []
        return out

    def step(self, store: _Storage, keep: np.ndarray | bool, deterministic: bool) -> np.ndarray:
        """Act in every sub-env and store the transition, with V(s_t) and, where a SAME_STEP
        episode ended, V of its real last observation. Returns which sub-envs ended a kept
        episode (``Transition.finished``: on Atari, a whole game)."""
        action, log_prob, value = self.act(self.obs, deterministic)
        self.has_critic = value is not None
        step = self.transition(action.reshape(self.n, *self.action_shape), keep)
        final_value = self.zeros
        if self.same_step and self.has_critic and step.ended.any():
            final_value = self.value(step.successors())
        store.put(
            obs=step.obs,
            actions=action,
            log_probs=log_prob,
            rewards=step.reward,
            terminated=step.terminated,
            truncated=step.truncated,
            values=self.zeros if value is None else value,
            final_values=final_value,
            mask=step.valid,
        )
        return step.finished

    def batch(self, store: _Storage) -> Batch:
        """The stored steps as a ``Batch``, with V(s_{t+1}) of every step's true successor."""
        data = store.view()
        values = data.pop("values")
        final_values = data.pop("final_values")
        # V of the observation after the last step
        last_value = self.value(self.obs) if self.has_critic else self.zeros
        next_values = torch.cat([values[1:], torch.from_numpy(last_value)[None]])
        if self.same_step:
            ended = data["terminated"] | data["truncated"]
            next_values = torch.where(ended, final_values, next_values)
        episode_returns, episode_lengths = self.finished()
        return Batch(
            **data,
            values=values,
            next_values=next_values,
            episode_returns=episode_returns,
            episode_lengths=episode_lengths,
        )


def _gsde_actor(model: nn.Module) -> Policy | None:
    """The model's policy if it explores by gSDE (``GaussianPolicy``, std="gsde"), else None."""
    try:
        actor = actor_of(model)
    except TypeError:  # a custom model
        return None
    return actor if getattr(actor, "std_mode", None) == "gsde" else None


@torch.inference_mode()
def collect_episodes(
    envs: gym.vector.VectorEnv,
    model: Policy | ActorCritic,
    episodes_per_env: int | np.ndarray,
    deterministic: bool = False,
    seed: int | None = None,
    fast: bool = True,
) -> Batch:
    """Reset ``envs`` and run each sub-env until it has finished ``episodes_per_env`` episodes.

    Every sub-env's first k episodes are kept whole and everything after them is masked out, so
    which episodes are kept does not depend on their lengths (keeping "the first M episodes to
    end" instead would favour short ones and bias the gradient). An episode cut by a time limit
    counts as finished; ``next_values`` holds V of its final observation for bootstrapping.
    """
    stepper = Stepper(envs, fast)
    stepper.reset(seed)
    stepper.use(model)
    quota = np.broadcast_to(np.asarray(episodes_per_env), (stepper.n,))
    finished = np.zeros(stepper.n, dtype=np.int64)
    store = _Storage(capacity=256)
    while (finished < quota).any():
        finished += stepper.step(store, finished < quota, deterministic)
    return stepper.batch(store)


class Rollout:
    """Fixed-length rollouts (A2C, PPO): ``n_steps`` steps of every sub-env per ``collect``.

    The envs run on across calls, so episodes span rollouts; the last step of a rollout that did
    not end its episode bootstraps from V of the next observation. Storage is allocated once and
    reused: a ``Batch`` is valid until the next ``collect``.
    """

    def __init__(
        self, envs: gym.vector.VectorEnv, n_steps: int, seed: int | None = None, fast: bool = True
    ):
        self.n_steps = n_steps
        self.stepper = Stepper(envs, fast)
        self.stepper.reset(seed)
        self.store = _Storage(capacity=n_steps)

    def state(self) -> dict:
        return self.stepper.state()

    def load_state(self, state: dict, envs: gym.vector.VectorEnv, env_restored: bool) -> None:
        self.stepper.load_state(state, envs, env_restored)

    def close(self) -> None:
        """Nothing to release: the envs belong to the caller."""

    def metrics(self) -> dict[str, float]:
        """Collection metrics beyond the batch's own (Ray's rollout has some)."""
        return {}

    @torch.inference_mode()
    def collect(self, model: Policy | ActorCritic) -> Batch:
        self.store.t = 0
        self.stepper.use(model)
        for _ in range(self.n_steps):
            self.stepper.step(self.store, True, deterministic=False)
        return self.stepper.batch(self.store)
