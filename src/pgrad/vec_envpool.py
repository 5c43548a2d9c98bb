"""EnvPool as a Gymnasium 1.x vector env with ``NEXT_STEP`` autoreset (issue 19).

``make(env_id, n_envs, **options)`` runs ``n_envs`` copies of an env in EnvPool's C++ thread pool
and presents them to pgrad as any other ``gymnasium.vector.VectorEnv``:

- **Ids.** Gymnasium ids are mapped to EnvPool task ids:

  - ``ALE/<Game>-v5`` and ``<Game>NoFrameskip-v4`` -> EnvPool ``<Game>-v5`` with pgrad's Atari
    preprocessing: 84x84 grayscale, frame skip 4 with the last two frames max-pooled, up to 30
    no-ops at reset, 4 stacked frames (``(4, 84, 84)`` uint8, stack first), episodic life, fire
    reset, rewards clipped to their sign, 27000 steps (108000 frames) per game; sticky actions
    with probability 0.25 for ``ALE/*-v5`` and 0 for ``*NoFrameskip-v4`` (as ale-py registers
    them).
  - Classic-control and MuJoCo ids that EnvPool also has, under the same id (EnvPool 1.2 has
    Gymnasium's MuJoCo ``-v4`` and ``-v5`` tasks, e.g. ``HalfCheetah-v5``, ``Hopper-v5``,
    following Gymnasium 1.2's sources, on its own bundled MuJoCo 3.6).
  - Anything else raises ``PgradError``.

  ``options`` go to ``envpool.make`` and override these defaults (e.g. ``num_threads=2``,
  ``episodic_life=False``, ``noop_max=1``).
- **Seeding.** EnvPool fixes its seeds when a pool is built, so the pool is built lazily by
  ``reset``: ``reset(seed=s)`` (re)builds it with sub-env ``i`` seeded ``s + i``, the convention
  of Gymnasium's vector envs, so the same seed gives the same episodes every time; a list gives
  one seed per sub-env. ``reset()`` without a seed resets the pool it has (building one the
  first time, seeded by a ``seed`` option if given, else from fresh OS entropy). EnvPool's seeds
  are int32: larger seeds are folded modulo ``2**31 - n_envs``. Building costs ~0.2 s per Atari
  sub-env, so seed once and reset after.
- **Autoreset.** EnvPool already resets a finished sub-env on the *next* step, ignoring its action
  and returning the new episode's first observation with reward 0 and both flags False: exactly
  Gymnasium's ``NEXT_STEP`` (checked in ``tests/test_envpool.py``), so steps pass through.
- **Episodes.** ``info["episode"] = {"r", "l", "t"}`` and ``info["_episode"]`` are set, as
  Gymnasium's vector ``RecordEpisodeStatistics`` sets them, on the step where a *real* episode
  ends: for Atari, a whole game (the last life lost, or the time limit), whatever episodic life
  made of each lost life; ``r`` sums the unclipped rewards (EnvPool's ``info["reward"]``) and
  ``l`` counts the steps that moved the game (autoreset steps excluded: ``info["elapsed_step"]``
  at the game's end). ``metadata["pgrad_episode_statistics"]`` says so. EnvPool's own info keys
  pass through (Atari: ``lives``, ``reward`` unclipped, ``terminated`` = game over, ``ram``,
  ``elapsed_step``).
- **Flags.** EnvPool reports ``terminated = done and not truncated``; where an Atari game ends or a
  life is lost (with episodic life) on the time limit's step, ``terminated`` is set as well, as
  Gymnasium does. Other envs keep EnvPool's flags (see ``Remaining differences``).

Remaining differences from the Gymnasium envs, by design of EnvPool:

- Initial states come from EnvPool's own generators (``std::mt19937`` per sub-env): the same
  seed gives other episodes than Gymnasium's.
- Non-Atari envs: a step that both terminates and hits the time limit reads
  ``terminated=False, truncated=True`` (Gymnasium: both True).
- Atari resets (``pgrad.atari`` is pgrad's Gymnasium chain): EnvPool's reset draws 0-29 no-ops
  then presses FIRE, and after a life lost under episodic life does the same again; pgrad's
  chain draws 1-30 no-ops at a game's start, takes one no-op after a lost life, and presses FIRE
  then UP after both. EnvPool does not report rewards scored in its reset frames, and its ``l``
  counts the agent's actions only, where the Gymnasium chain's ``RecordEpisodeStatistics`` also
  counts its reset steps (one no-op, FIRE, UP per life). Without fire reset, with
  ``noop_max=1``, no sticky actions, episodic life or clipping, Breakout is frame-for-frame
  Gymnasium's ``AtariPreprocessing`` + ``FrameStackObservation`` (tested), ALE versions apart
  (EnvPool bundles its own ALE; Gymnasium's is ale-py's).
- Box action spaces are float32, as Gymnasium's (EnvPool's are float64); actions are cast on the
  way in. Rewards come back as float64, as Gymnasium's vector envs give them, but EnvPool computed
  them in float32 (MuJoCo rewards agree with Gymnasium's to ~1e-8).
"""

from __future__ import annotations

import contextlib
import re
import time
import warnings
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from pgrad.errors import PgradError

__all__ = ["ATARI_OPTIONS", "EnvPoolVectorEnv", "envpool_task", "make"]

ATARI_OPTIONS: dict[str, Any] = {
    "img_height": 84,
    "img_width": 84,
    "gray_scale": True,
    "frame_skip": 4,
    "noop_max": 30,
    "stack_num": 4,
    "episodic_life": True,
    "use_fire_reset": True,
    "reward_clip": True,
    "max_episode_steps": 27000,
    "full_action_space": False,
}
_ATARI_IDS = (
    (re.compile(r"ALE/(\w+)-v5"), 0.25),
    (re.compile(r"(\w+)NoFrameskip-v4"), 0.0),
)
_FAMILIES = ("gymnasium.envs.classic_control", "gymnasium.envs.mujoco")
_INT32 = 2**31


def _envpool():
    try:
        import envpool
    except ImportError:
        raise PgradError(
            "the EnvPool backend needs envpool: pip install 'pgrad[envpool]'"
        ) from None
    return envpool


@contextlib.contextmanager
def _quiet():
    """Without the warnings of EnvPool's float32 Boxes made from float64 bounds."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*precision lowered", UserWarning)
        yield


def envpool_task(env_id: str) -> tuple[str, dict[str, Any], bool]:
    """(EnvPool task id, its default options, whether it is Atari) for a Gymnasium ``env_id``."""
    envpool = _envpool()
    tasks = set(envpool.list_all_envs())
    for pattern, sticky in _ATARI_IDS:
        match = pattern.fullmatch(env_id)
        if match and f"{match[1]}-v5" in tasks:
            return f"{match[1]}-v5", {**ATARI_OPTIONS, "repeat_action_probability": sticky}, True
    spec = gym.registry.get(env_id)
    if spec is not None and env_id in tasks and str(spec.entry_point).startswith(_FAMILIES):
        return env_id, {}, False
    raise PgradError(
        f"env {env_id!r} has no EnvPool backend (ALE/<Game>-v5, <Game>NoFrameskip-v4, "
        "classic-control and MuJoCo ids EnvPool has)"
    )


class EnvPoolVectorEnv(gym.vector.VectorEnv):
    """An EnvPool pool behind the Gymnasium 1.x ``VectorEnv`` API (see the module docstring)."""

    def __init__(self, env_id: str, n_envs: int, **options: Any):
        task_id, defaults, atari = envpool_task(env_id)
        if options.get("batch_size", n_envs) != n_envs:
            raise PgradError("EnvPool's asynchronous mode (batch_size < n_envs) is not supported")
        self.pgrad_env_id, self.task_id, self.atari = env_id, task_id, atari
        self.options = {**defaults, **options}
        self._first_seed = self.options.pop("seed", None)  # for a first reset() without a seed
        try:
            with _quiet():
                spec = _envpool().make_spec(task_id, num_envs=n_envs, **self.options)
                self.single_observation_space = spec.gymnasium_observation_space
                space = spec.gymnasium_action_space
        except Exception as e:  # EnvPool raises assorted errors for bad options
            raise PgradError(f"bad EnvPool options for {env_id!r}: {e}") from None
        self.episodic_life = atari and bool(spec.config.episodic_life)
        self.num_envs = n_envs
        self._action_dtype = space.dtype
        if isinstance(space, gym.spaces.Box):  # Gymnasium's Box actions are float32
            low, high = space.low.astype(np.float32), space.high.astype(np.float32)
            space = gym.spaces.Box(low, high, space.shape, np.float32)
        self.single_action_space = space
        self.observation_space = batch_space(self.single_observation_space, n_envs)
        self.action_space = batch_space(self.single_action_space, n_envs)
        self.metadata = {
            "autoreset_mode": AutoresetMode.NEXT_STEP,
            "pgrad_episode_statistics": True,
            "render_modes": [],
        }
        self.pool = None

    def _build(self, seed: int | list[int] | None) -> None:
        if seed is None:
            seed = self._first_seed
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1)[0])
        if isinstance(seed, int | np.integer):
            seed = int(seed) % (_INT32 - self.num_envs)
        else:
            if len(seed) != self.num_envs:
                raise PgradError(f"reset got {len(seed)} seeds for {self.num_envs} envs")
            seed = [int(s) % _INT32 for s in seed]
        self.close_extras()
        with _quiet():
            self.pool = _envpool().make(
                self.task_id, "gymnasium", num_envs=self.num_envs, seed=seed, **self.options
            )
            self.pool.observation_space  # noqa: B018 (built lazily, with the warnings)

    def reset(
        self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset every sub-env; a seed (re)builds the pool with it (see the module docstring)."""
        if options:
            raise PgradError("the EnvPool backend takes no reset options")
        if seed is not None or self.pool is None:
            self._build(seed)
        obs, info = self.pool.reset()
        n = self.num_envs
        self._autoreset = np.zeros(n, dtype=bool)
        self._returns = np.zeros(n)
        self._lengths = np.zeros(n, dtype=np.int64)
        self._starts = np.full(n, time.perf_counter())
        self._lives = info.get("lives")
        info.pop("players", None)
        return obs, info

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        if self.pool is None:
            raise PgradError("reset the EnvPool env before stepping it")
        actions = np.asarray(actions, dtype=self._action_dtype)
        obs, reward, terminated, truncated, info = self.pool.step(actions)
        info.pop("players", None)
        done = terminated | truncated
        stepped = ~self._autoreset  # the autoreset steps are not transitions
        if self.atari:
            game_over = info["terminated"].astype(bool)
            ended = done & (game_over | truncated)  # a whole game, not a life
            life_lost = self.episodic_life & (info["lives"] < self._lives)
            terminated = terminated | (truncated & (game_over | life_lost))
            self._lives = info["lives"]
            self._returns[stepped] += info["reward"][stepped]  # unclipped
        else:
            ended = done
            self._returns[stepped] += reward[stepped]
        self._lengths += stepped
        if ended.any():
            now = time.perf_counter()
            info["episode"] = {
                "r": np.where(ended, self._returns, 0.0),
                "l": np.where(ended, self._lengths, 0),
                "t": np.where(ended, np.round(now - self._starts, 6), 0.0),
            }
            info["_episode"] = ended
            self._returns[ended] = 0.0
            self._lengths[ended] = 0
            self._starts[ended] = now
        self._autoreset = done
        return obs, reward.astype(np.float64), terminated, truncated, info

    def close_extras(self, **kwargs: Any) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool = None


def make(env_id: str, n_envs: int, **options: Any) -> gym.vector.VectorEnv:
    """``n_envs`` copies of ``env_id`` in one EnvPool pool, as a Gymnasium ``NEXT_STEP`` vector
    env; ``options`` go to ``envpool.make`` (e.g. ``num_threads``). Seed it with ``reset(seed=)``.
    """
    return EnvPoolVectorEnv(env_id, n_envs, **options)
