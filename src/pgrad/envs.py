"""Making Gymnasium environments: id checks, vector envs, action clipping."""

from __future__ import annotations

import difflib
import importlib
import os
import sys
from typing import Literal

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode

from pgrad import atari
from pgrad.errors import PgradError, module_name

wrappers = gym.wrappers.vector


class NormalizeReward(wrappers.NormalizeReward):
    """Gymnasium's reward scaling (r / std of the running discounted return), with the
    discounted return restarted after *every* episode end, as Stable-Baselines3's VecNormalize
    does. Gymnasium's restarts it only at terminations and carries it across time-limit
    truncations, so on envs whose early episodes all hit the time limit (Acrobot, Hopper standing
    still) it settles near the constant -1 / (1 - gamma) and its standard deviation, the scale
    the rewards are divided by, shrinks."""

    def step(self, actions):
        obs, reward, terminated, truncated, info = self.env.step(actions)
        if self._autoreset_mode == AutoresetMode.SAME_STEP:
            active = np.ones(self.num_envs, dtype=bool)
        else:  # the step after an episode's end is the ignored autoreset step
            active = ~self._prev_dones.astype(bool)
        self.accumulated_reward[active] = (
            self.accumulated_reward[active] * self.gamma + reward[active]
        )
        if self._update_running_mean and active.any():
            self.return_rms.update(self.accumulated_reward[active])
        done = terminated | truncated
        self.accumulated_reward[done] = 0.0
        self._prev_dones = done.astype(np.float32)
        return (
            obs,
            reward / np.sqrt(self.return_rms.var + self.epsilon),
            terminated,
            truncated,
            info,
        )


_STATS = [
    ("obs", wrappers.NormalizeObservation, "obs_rms"),
    ("return", NormalizeReward, "return_rms"),
]

Vectorization = Literal["auto", "sync", "async", "envpool", "vector_entry_point"]


def check_env_id(env_id: str) -> gym.envs.registration.EnvSpec:
    """The registered spec of ``env_id``, or a one-line error with close matches.

    ``module:EnvId`` imports ``module`` first (where a custom env registers itself), as
    ``gymnasium.make`` does, and finds it as ``python -m`` would: the working directory comes
    first on ``sys.path`` (the ``pgrad`` console script leaves it off). Worker processes are
    given the same string and inherit ``sys.path``.
    """
    if ":" in env_id:
        module, env_id = env_id.split(":", 1)
        if os.getcwd() not in sys.path and "" not in sys.path:
            sys.path.insert(0, os.getcwd())
        try:
            importlib.import_module(module_name(module, f"env {module + ':' + env_id!r}"))
        except ImportError as e:
            raise PgradError(f"cannot import {module!r} for env {env_id!r}: {e}") from None
    if atari.is_atari(env_id):
        atari.register()  # ale-py's ids exist once it is imported
    try:
        return gym.spec(env_id)
    except gym.error.Error:
        close = difflib.get_close_matches(env_id, list(gym.registry), n=3, cutoff=0.6)
        hint = (
            f"; did you mean {', '.join(close)}?"
            if close
            else "; see `gymnasium.pprint_registry()`"
        )
        raise PgradError(f"unknown env id {env_id!r}{hint}") from None


def make_env(env_id: str, **kwargs) -> gym.Env:
    """One ``env_id`` env as each sub-env of ``make_vec_env`` is made (without its vector-level
    wrappers): Atari ids get ``pgrad.atari``'s wrapper chain, so observations are the stacked
    84x84 frames a CNN policy was trained on; other ids are ``gym.make(env_id, **kwargs)``."""
    check_env_id(env_id)
    if not atari.is_atari(env_id):
        return gym.make(env_id, **kwargs)
    env = gym.make(env_id, **atari.make_kwargs(), **kwargs)
    for wrap in atari.wrappers():
        env = wrap(env)
    return env


def make_vec_env(
    env_id: str,
    n_envs: int,
    vectorization: Vectorization = "auto",
    autoreset_mode: AutoresetMode = AutoresetMode.NEXT_STEP,
    normalize_obs: bool = False,
    normalize_reward: bool = False,
    gamma: float = 0.99,
) -> gym.vector.VectorEnv:
    """``n_envs`` copies of ``env_id`` as one Gymnasium vector env, wrapped (inside out) in:

    - ``RecordEpisodeStatistics`` (with ``normalize_reward`` only): true episode returns in
      ``info["episode"]`` beneath the reward normalisation (without it, the rollout sums the
      rewards it sees itself, and skips this wrapper's per-step cost); not on envs that record
      their own (``pgrad_episode_statistics``: Atari's whole games);
    - ``ClipAction`` (``Box`` actions): clips what reaches the env, so the policy's own unclipped
      samples are what its log-probs are computed on;
    - ``NormalizeObservation`` (``normalize_obs``): running mean/variance of observations;
    - ``NormalizeReward`` (``normalize_reward``): rewards divided by the running standard
      deviation of the discounted return (restarted at every episode end, as in SB3).

    ``auto`` uses the env's own vectorised implementation (``vector_entry_point``, e.g. CartPole's)
    when it has one and the default ``NEXT_STEP`` autoreset is asked for, else ``sync``.
    ``envpool`` steps the envs in EnvPool's C++ thread pool (``pgrad.vec_envpool``), with the
    same autoreset and episode statistics. Atari ids get ``pgrad.atari``'s wrapper chain.
    Seeding happens at the first ``reset(seed=...)``.
    """
    spec = check_env_id(env_id)
    if vectorization == "envpool":
        from pgrad import vec_envpool

        envs = vec_envpool.make(env_id, n_envs)
    else:
        envs = _make_gymnasium(spec, env_id, n_envs, vectorization, autoreset_mode)
    envs.unwrapped.pgrad_env_id = env_id  # as given, ``module:`` prefix included
    if normalize_reward and not envs.unwrapped.metadata.get("pgrad_episode_statistics"):
        envs = wrappers.RecordEpisodeStatistics(envs)
    if isinstance(envs.single_action_space, gym.spaces.Box):
        envs = wrappers.ClipAction(envs)
    if normalize_obs:
        envs = wrappers.NormalizeObservation(envs)
    if normalize_reward:
        envs = NormalizeReward(envs, gamma=gamma)
    return envs


def _make_gymnasium(
    spec: gym.envs.registration.EnvSpec,
    env_id: str,
    n_envs: int,
    vectorization: Vectorization,
    autoreset_mode: AutoresetMode,
) -> gym.vector.VectorEnv:
    is_atari = atari.is_atari(env_id)
    if vectorization == "auto":  # not ale-py's own vector env: its preprocessing is its own
        native = spec.vector_entry_point is not None and autoreset_mode == AutoresetMode.NEXT_STEP
        vectorization = "vector_entry_point" if native and not is_atari else "sync"
    kwargs: dict = {}
    if vectorization != "vector_entry_point":
        kwargs["vector_kwargs"] = {"autoreset_mode": autoreset_mode}
    if is_atari:
        kwargs.update(wrappers=atari.wrappers(), **atari.make_kwargs())
    try:
        envs = gym.make_vec(env_id, num_envs=n_envs, vectorization_mode=vectorization, **kwargs)
    except gym.error.DependencyNotInstalled as e:
        raise PgradError(f"env {env_id!r} needs extra packages: {e}") from None
    if is_atari:  # a copy: the sub-envs' metadata is their class's
        envs.unwrapped.metadata = {**envs.unwrapped.metadata, "pgrad_episode_statistics": True}
    return envs


def _find(envs: gym.vector.VectorEnv, kind: type) -> gym.vector.VectorEnv | None:
    while isinstance(envs, gym.vector.VectorWrapper):
        if isinstance(envs, kind):
            return envs
        envs = envs.env
    return None


def normalization_state(envs: gym.vector.VectorEnv) -> dict[str, torch.Tensor]:
    """The running statistics of the normalisation wrappers, as tensors for a checkpoint."""
    state = {}
    for prefix, kind, attr in _STATS:
        wrapper = _find(envs, kind)
        if wrapper is not None:
            rms = getattr(wrapper, attr)
            state[f"{prefix}_mean"] = torch.as_tensor(np.asarray(rms.mean, dtype=np.float64))
            state[f"{prefix}_var"] = torch.as_tensor(np.asarray(rms.var, dtype=np.float64))
            state[f"{prefix}_count"] = torch.tensor(float(rms.count), dtype=torch.float64)
    return state


def load_normalization_state(
    envs: gym.vector.VectorEnv, state: dict[str, torch.Tensor], frozen: bool = False
) -> None:
    """Put saved statistics into ``envs``' wrappers; ``frozen`` stops them updating (evaluation)."""
    for prefix, kind, attr in _STATS:
        wrapper = _find(envs, kind)
        if wrapper is None:
            continue
        if f"{prefix}_mean" not in state:
            raise PgradError(f"no saved {prefix} normalisation statistics for a normalised env")
        rms = getattr(wrapper, attr)
        rms.mean = state[f"{prefix}_mean"].numpy().astype(np.asarray(rms.mean).dtype)
        rms.var = state[f"{prefix}_var"].numpy().astype(np.asarray(rms.var).dtype)
        rms.count = float(state[f"{prefix}_count"])
        if frozen:
            wrapper.update_running_mean = False


def autoreset_mode(envs: gym.vector.VectorEnv) -> AutoresetMode:
    mode = envs.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
    return AutoresetMode(mode) if isinstance(mode, str) else mode


def vec_env_id(envs: gym.vector.VectorEnv) -> str:
    """The id ``make_vec_env`` was given for ``envs`` (what a worker process makes its own from)."""
    return getattr(envs.unwrapped, "pgrad_env_id", None) or envs.unwrapped.spec.id


def spaces(envs: gym.vector.VectorEnv) -> tuple[gym.Space, gym.Space]:
    """(observation space, action space) of one sub-env, as the env itself defines them.

    ``ClipAction`` widens the wrapped env's action space to (-inf, inf); policies are built on
    the real bounds underneath it. ``Dict`` observations are refused: rollouts store arrays.
    """
    if isinstance(envs.single_observation_space, gym.spaces.Dict):
        raise PgradError(
            f"{vec_env_id(envs)}: Dict observations are not supported in rollouts yet; "
            "wrap the env in gymnasium.wrappers.FlattenObservation, or keep one key"
        )
    return envs.single_observation_space, envs.unwrapped.single_action_space
