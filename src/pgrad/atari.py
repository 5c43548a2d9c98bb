"""Atari through ale-py and Gymnasium's own wrappers, with CleanRL's and rl-zoo's choices.

Each sub-env is, inside out:

- the ALE env with ``frameskip=1`` (``ALE/*-v5`` keep their sticky actions, p = 0.25;
  ``*NoFrameskip-v4`` have none);
- ``EmulatorState``: pickles the emulator's state with the env, so a resumed run continues
  the same games;
- ``AtariPreprocessing``: up to 30 no-op actions at reset, 4 frames per action with the max of
  the last two, 84x84 grayscale ``uint8``;
- ``RecordEpisodeStatistics``: the true game score and length, before anything below changes
  rewards or episodes: ``info["episode"]`` is what pgrad reports;
- ``EpisodicLife``: a lost life ends the *training* episode (``terminated``), while the game
  goes on; the game resets only when it is over;
- ``FireReset``: presses FIRE after every (training-episode) reset in games that need it;
- ``ClipReward``: rewards clipped to [-1, 1] (Atari rewards are integers: their sign);
- ``FrameStackObservation``: the last 4 frames, (4, 84, 84) ``uint8``.

The vector env is marked ``pgrad_episode_statistics``: rollouts take episode returns from
``info["episode"]`` where it says a game ended, never the clipped, per-life sums.
"""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym

from pgrad.errors import PgradError

STACK = 4


def register() -> None:
    """Make the ALE env ids known to Gymnasium (ale-py ships the ROMs)."""
    try:
        import ale_py
    except ImportError:
        raise PgradError("Atari envs need ale-py: pip install 'pgrad[atari]'") from None
    gym.register_envs(ale_py)


def is_atari(env_id: str) -> bool:
    """``ALE/...`` or ``...NoFrameskip-v4``/``...-v4``/``-v5`` ids registered by ale-py."""
    name = env_id.partition(":")[2] or env_id
    if name.startswith("ALE/") or name.endswith("NoFrameskip-v4"):
        return True
    spec = gym.registry.get(name)
    return spec is not None and "ale_py" in str(spec.entry_point)


class EmulatorState(gym.Wrapper):
    """Carries the emulator (RAM, frame counters, sticky-action RNG) and the env's NumPy
    generator (no-op starts) through pickling. ale-py's env pickles as its constructor's
    arguments, so without this an unpickled env is a new game at frame 0 while the wrappers
    above it still hold the old game's lives, frames and score."""

    def __getstate__(self) -> dict:
        game = self.env.unwrapped
        return {**self.__dict__, "_saved": (game.ale.cloneState(include_rng=True), game.np_random)}

    def __setstate__(self, state: dict) -> None:
        emulator, np_random = state.pop("_saved")
        self.__dict__.update(state)
        game = self.env.unwrapped
        game.ale.restoreState(emulator)
        game.np_random = np_random


class EpisodicLife(gym.Wrapper):
    """A lost life is a terminal state for learning; the game itself continues. ``reset``
    after a lost life takes one no-op step instead of resetting the game (Mnih et al., 2015;
    CleanRL's and Stable-Baselines3's ``EpisodicLifeEnv``). A seeded ``reset`` always starts a
    new game: that is what a caller asking for a seed means (an evaluation), while autoreset
    after a lost life passes no seed."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.lives = 0
        self.game_over = True

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.game_over = terminated or truncated
        lives = self.env.unwrapped.ale.lives()
        if 0 < lives < self.lives:
            terminated = True
        self.lives = lives
        return obs, reward, terminated, truncated, info

    def reset(self, **kwargs):
        if self.game_over or kwargs.get("seed") is not None:
            obs, info = self.env.reset(**kwargs)
        else:
            obs, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:  # the no-op ended the game after all
                obs, info = self.env.reset(**kwargs)
        self.lives = self.env.unwrapped.ale.lives()
        return obs, info


class FireReset(gym.Wrapper):
    """Press FIRE (then UP) after a reset, for games that wait for it (Breakout serves the
    ball only then); a no-op wrapper for games without a FIRE action."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        meanings = env.unwrapped.get_action_meanings()
        self.needed = len(meanings) >= 3 and meanings[1] == "FIRE"

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        if not self.needed:
            return obs, info
        for action in (1, 2):
            obs, _, terminated, truncated, info = self.env.step(action)
            if terminated or truncated:
                obs, info = self.env.reset(**kwargs)
        return obs, info


FRAME_SKIP = 4
STEPS_PER_SECOND = 60 / FRAME_SKIP
"""Agent steps per second of game time: the console runs at 60 frames a second (ALE's
``render_fps`` of 30 would play recordings of these steps at twice the speed)."""


def _preprocessing(env: gym.Env) -> gym.Env:
    return gym.wrappers.AtariPreprocessing(
        env, noop_max=30, frame_skip=FRAME_SKIP, screen_size=84, terminal_on_life_loss=False,
        grayscale_obs=True, scale_obs=False,
    )  # fmt: skip


def wrappers() -> list[Callable[[gym.Env], gym.Env]]:
    """The per-sub-env wrapper chain (module docstring), innermost first."""
    return [
        EmulatorState,
        _preprocessing,
        gym.wrappers.RecordEpisodeStatistics,
        EpisodicLife,
        FireReset,
        lambda env: gym.wrappers.ClipReward(env, -1.0, 1.0),
        lambda env: gym.wrappers.FrameStackObservation(env, STACK),
    ]


def make_kwargs() -> dict:
    """Keyword arguments for ``gym.make``: frame skipping is ``AtariPreprocessing``'s."""
    return {"frameskip": 1}
