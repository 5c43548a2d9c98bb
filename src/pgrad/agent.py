"""A trained policy outside training: ``pgrad.load(run_dir)``, ``agent.act(obs)``, evaluation."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from pgrad import algos
from pgrad.config import build
from pgrad.envs import check_env_id, load_normalization_state, make_env, make_vec_env
from pgrad.errors import PgradError
from pgrad.rollout import collect_episodes
from pgrad.runs import Run, load_checkpoint

EVAL_SEED_OFFSET = 10_000
"""Evaluation envs are seeded with ``seed + EVAL_SEED_OFFSET``, apart from the training envs."""


def normalize_observations(
    obs: torch.Tensor, mean: torch.Tensor, var: torch.Tensor
) -> torch.Tensor:
    """(obs - mean) / sqrt(var + 1e-8) in the statistics' float64, as float32: what Gymnasium's
    ``NormalizeObservation`` computes, for acting without its env wrapper."""
    return ((obs.double() - mean) / torch.sqrt(var + 1e-8)).float()


def evaluate(
    model: nn.Module,
    env_id: str,
    episodes: int,
    seed: int,
    deterministic: bool = True,
    envs: gym.vector.VectorEnv | None = None,
    normalization: dict[str, torch.Tensor] | None = None,
) -> np.ndarray:
    """Undiscounted returns of ``episodes`` episodes, split over up to 10 parallel envs.

    With ``normalization`` (saved statistics), observations are normalised by them, frozen."""
    own = envs is None
    if envs is None:
        normalization = normalization or {}
        envs = make_vec_env(env_id, min(episodes, 10), normalize_obs="obs_mean" in normalization)
        load_normalization_state(envs, normalization, frozen=True)
    n = envs.num_envs
    quota = np.full(n, episodes // n)
    quota[: episodes % n] += 1
    try:
        batch = collect_episodes(envs, model, quota, deterministic=deterministic, seed=seed)
    finally:
        if own:
            envs.close()
    return batch.episode_returns


class Agent:
    """A policy with the spaces of the env it was trained on."""

    def __init__(
        self,
        model: nn.Module,
        env_id: str,
        algo: str,
        config: dict,
        step: int,
        observation_space: gym.Space,
        action_space: gym.Space,
        normalization: dict[str, torch.Tensor] | None = None,
    ):
        self.model, self.env_id, self.algo = model, env_id, algo
        self.config, self.step = config, step
        self.observation_space, self.action_space = observation_space, action_space
        self.normalization = normalization or {}

    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        """Actions for one observation or a batch, ready for ``env.step`` (clipped to a Box)."""
        obs = np.asarray(obs)
        single = obs.shape == self.observation_space.shape
        batch = torch.as_tensor(obs[None] if single else obs, dtype=torch.float32)
        if "obs_mean" in self.normalization:
            mean, var = self.normalization["obs_mean"], self.normalization["obs_var"]
            batch = normalize_observations(batch, mean, var)
        action = self.model.act(batch, deterministic).numpy()
        if isinstance(self.action_space, gym.spaces.Box):
            action = np.clip(
                action.reshape(-1, *self.action_space.shape),
                self.action_space.low,
                self.action_space.high,
            )
        return action[0] if single else action

    def evaluate(
        self, episodes: int = 10, seed: int | None = None, deterministic: bool = True
    ) -> np.ndarray:
        seed = self.config["seed"] + EVAL_SEED_OFFSET if seed is None else seed
        return evaluate(
            self.model, self.env_id, episodes, seed, deterministic, normalization=self.normalization
        )


def _seen_by_policy(space: gym.Space, normalization: dict) -> gym.Space:
    """The observation space the policy was built on in training: ``NormalizeObservation``'s
    float32 ``Box`` when the run normalised observations (a CNN then takes them as they are,
    not divided by 255), else the env's own."""
    if "obs_mean" in normalization and isinstance(space, gym.spaces.Box):
        return gym.spaces.Box(-np.inf, np.inf, space.shape, np.float32)
    return space


def load(run_dir: str | Path) -> Agent:
    """The policy in ``run_dir``'s latest checkpoint. Its observations are those of
    ``pgrad.envs.make_env(agent.env_id)``: for Atari, the preprocessed, stacked frames."""
    run = Run.open(run_dir)
    meta = run.config
    algo, env_id = meta["algo"], meta["env"]
    spec = algos.get(algo)
    check_env_id(env_id)
    settings = {k: v for k, v in meta.items() if k not in ("algo", "env", "pgrad_version")}
    config = build(spec.config_cls, [settings], algo)
    path = run.latest_checkpoint()
    state = load_checkpoint(path)
    if state.get("env") != env_id or state.get("algo") != algo:
        raise PgradError(
            f"checkpoint {str(path)!r} was written by {state.get('algo')!r} on "
            f"{state.get('env')!r}, but the run is {algo!r} on {env_id!r}"
        )
    env = make_env(env_id)
    spaces = env.observation_space, env.action_space
    env.close()
    normalization = state.get("normalization", {})
    model = spec.build_model(config, _seen_by_policy(spaces[0], normalization), spaces[1])
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, KeyError) as e:
        raise PgradError(
            f"checkpoint {str(path)!r} does not fit the run's model: {str(e).splitlines()[0]}"
        ) from None
    model.eval()
    return Agent(model, env_id, algo, meta, int(state["step"]), *spaces, normalization)
