"""Making Gymnasium environments: id checks, vector envs, action clipping."""

from __future__ import annotations

import difflib
from typing import Literal

import gymnasium as gym
from gymnasium.vector import AutoresetMode

from pgrad.errors import PgradError

Vectorization = Literal["auto", "sync", "async", "vector_entry_point"]


def check_env_id(env_id: str) -> gym.envs.registration.EnvSpec:
    """The registered spec of ``env_id``, or a one-line error with close matches."""
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


def make_vec_env(
    env_id: str,
    n_envs: int,
    vectorization: Vectorization = "auto",
    autoreset_mode: AutoresetMode = AutoresetMode.NEXT_STEP,
) -> gym.vector.VectorEnv:
    """``n_envs`` copies of ``env_id`` as one Gymnasium vector env.

    ``auto`` uses the env's own vectorised implementation (``vector_entry_point``, e.g. CartPole's)
    when it has one and the default ``NEXT_STEP`` autoreset is asked for, else ``sync``.
    Continuous actions are clipped to the ``Box`` bounds by Gymnasium's ``ClipAction`` wrapper,
    so the policy's own (unclipped) samples are what its log-probs are computed on.
    Seeding happens at the first ``reset(seed=...)``.
    """
    spec = check_env_id(env_id)
    if vectorization == "auto":
        native = spec.vector_entry_point is not None and autoreset_mode == AutoresetMode.NEXT_STEP
        vectorization = "vector_entry_point" if native else "sync"
    kwargs = {}
    if vectorization != "vector_entry_point":
        kwargs["vector_kwargs"] = {"autoreset_mode": autoreset_mode}
    try:
        envs = gym.make_vec(env_id, num_envs=n_envs, vectorization_mode=vectorization, **kwargs)
    except gym.error.DependencyNotInstalled as e:
        raise PgradError(f"env {env_id!r} needs extra packages: {e}") from None
    if isinstance(envs.single_action_space, gym.spaces.Box):
        envs = gym.wrappers.vector.ClipAction(envs)
    return envs


def autoreset_mode(envs: gym.vector.VectorEnv) -> AutoresetMode:
    mode = envs.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
    return AutoresetMode(mode) if isinstance(mode, str) else mode


def spaces(envs: gym.vector.VectorEnv) -> tuple[gym.Space, gym.Space]:
    """(observation space, action space) of one sub-env, as the env itself defines them.

    ``ClipAction`` widens the wrapped env's action space to (-inf, inf); policies are built on
    the real bounds underneath it.
    """
    return envs.single_observation_space, envs.unwrapped.single_action_space
