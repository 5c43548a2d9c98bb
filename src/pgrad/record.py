"""``pgrad record``: render episodes of a trained policy to a GIF or an MP4.

Frames come from the env's ``rgb_array`` rendering (for Atari the full screen, while the agent
sees ``pgrad.atari``'s stacked 84x84 frames, and an episode is a whole game, every life); the
agent acts deterministically (or sampled, with ``stochastic``) through ``Agent.act``, so saved
observation normalisation applies.
MP4 goes through Gymnasium's ``save_video`` (needs moviepy: ``pip install 'pgrad[video]'``); GIF
through Pillow, which matplotlib already brings.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import gymnasium as gym
import numpy as np

from pgrad.agent import EVAL_SEED_OFFSET, load
from pgrad.atari import STEPS_PER_SECOND, is_atari
from pgrad.envs import make_env
from pgrad.errors import PgradError
from pgrad.runs import output_file

FORMATS = (".gif", ".mp4")


def frames(run_dir: str | Path, episodes: int = 1, seed: int | None = None,
           stochastic: bool = False) -> tuple[list[np.ndarray], list[float], int]:  # fmt: skip
    """(frames, episode returns, frames per second) of ``episodes`` rendered episodes."""
    agent = load(run_dir)
    seed = agent.config["seed"] + EVAL_SEED_OFFSET if seed is None else seed
    try:
        env = make_env(agent.env_id, render_mode="rgb_array")
    except gym.error.DependencyNotInstalled as e:
        raise PgradError(f"rendering {agent.env_id!r} needs extra packages: {e}") from None
    images, returns = [], []
    try:
        for episode in range(episodes):
            obs, _ = env.reset(seed=seed + episode)
            images.append(env.render())
            total, done = 0.0, False
            while not done:
                obs, reward, terminated, truncated, info = env.step(
                    agent.act(obs, deterministic=not stochastic)
                )
                images.append(env.render())
                total += float(reward)
                done = terminated or truncated
                if done and is_atari(agent.env_id):
                    # A lost life ends Atari's training episode, not the game: play on to the
                    # game's end, and report its true score rather than clipped rewards.
                    if "episode" in info:
                        total = float(info["episode"]["r"])
                    else:
                        obs, _ = env.reset()
                        done = False
            returns.append(total)
        if is_atari(agent.env_id):  # one image per agent step, 4 console frames
            fps = int(STEPS_PER_SECOND)
        else:
            fps = int(env.metadata.get("render_fps") or 30)
    finally:
        env.close()
    return images, returns, fps


def record(run_dir: str | Path, out: str | Path, episodes: int = 1, seed: int | None = None,
           stochastic: bool = False) -> tuple[Path, list[float]]:  # fmt: skip
    """Write the video to ``out`` (.gif or .mp4); returns it and the episodes' returns."""
    out = output_file(out, FORMATS)  # the suffix in any case, as for plots (PIL reads it so)
    images, returns, fps = frames(run_dir, episodes, seed, stochastic)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".gif":
        from PIL import Image

        pictures = [Image.fromarray(image) for image in images]
        pictures[0].save(
            out, save_all=True, append_images=pictures[1:], duration=1000 / fps, loop=0
        )
        return out, returns
    try:
        import moviepy  # noqa: F401  (save_video's dependency)
    except ModuleNotFoundError:
        raise PgradError(
            "MP4 needs moviepy: pip install 'pgrad[video]' (or write a .gif)"
        ) from None
    from gymnasium.utils.save_video import save_video

    with tempfile.TemporaryDirectory() as tmp:
        save_video(images, tmp, fps=fps, name_prefix="video", episode_trigger=lambda _: True)
        shutil.move(next(Path(tmp).glob("*.mp4")), out)
    return out, returns
