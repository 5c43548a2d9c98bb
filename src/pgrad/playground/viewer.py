"""The agent as the learner sees it: a thread in the worker that plays its own copy of the env
with the latest policy, and sends frames with the policy's action distribution at that state.

Training hands the viewer each new policy from its callback (``show``); the viewer copies the
weights into a model of its own under a lock, so it never reads a network mid-update.
"""

from __future__ import annotations

import base64
import copy
import io
import threading
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from PIL import Image
from torch import nn

from pgrad.playground.lifeline import Channel, Control
from pgrad.policies import Categorical, SquashedNormal, actor_of

STEP_S = 0.05
"""Seconds between the viewer's env steps (20 steps a second)."""
FRAME_EVERY = 2
"""Steps between frames sent (10 frames a second)."""


def png(frame: np.ndarray) -> str:
    """An RGB array as a base64 PNG, halved where it is wider than 400 pixels."""
    image = Image.fromarray(frame)
    if image.width > 400:
        image = image.reduce(2)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return base64.b64encode(buffer.getvalue()).decode()


def describe(dist: Any) -> dict[str, Any]:
    """What the page draws for one state: action probabilities (discrete), or the mean and
    standard deviation of each action dimension (continuous; SAC's tanh-squashed Gaussian as
    its squashed mean and the pre-squash std scaled to the action range)."""
    if isinstance(dist, Categorical):
        return {"probs": dist.probs[0].tolist()}
    if isinstance(dist, SquashedNormal):
        std = dist.base.stddev * dist.scale
        return {"mean": dist.mode[0].tolist(), "std": std[0].tolist(), "squashed": True}
    return {"mean": dist.mean[0].tolist(), "std": dist.stddev[0].tolist()}


class Viewer(threading.Thread):
    """Plays ``env_id`` with the latest policy and sends ``frame`` events."""

    def __init__(self, env_id: str, channel: Channel, control: Control, seed: int):
        super().__init__(daemon=True, name="pgrad-playground-viewer")
        self.channel, self.control = channel, control
        self.lock = threading.Lock()
        self.model: nn.Module | None = None
        self.done = threading.Event()
        # Made and drawn once here, in the caller's thread: rendering imports pygame, and two
        # threads importing extension modules at once (training imports lazily too) can hang.
        self.env = gym.make(env_id, render_mode="rgb_array")
        self.obs, _ = self.env.reset(seed=seed)
        self.channel.send({"type": "frame", "png": png(self.env.render()), "episode": 0})

    def show(self, model: nn.Module) -> None:
        """Take a copy of the policy being trained (called from the training callback)."""
        with self.lock:
            if self.model is None:
                self.model = copy.deepcopy(model).eval()
            else:
                self.model.load_state_dict(model.state_dict())

    def stop(self) -> None:
        self.done.set()
        self.join()

    def run(self) -> None:
        env, obs = self.env, self.obs
        step = episode = 0
        episode_return = 0.0
        try:
            while not (self.done.is_set() or self.control.stopped.is_set()):
                if self.control.paused or self.model is None:
                    self.done.wait(STEP_S)
                    continue
                view, action = self._act(obs, env.action_space)
                obs, reward, terminated, truncated, _ = env.step(action)
                episode_return += float(reward)
                if step % FRAME_EVERY == 0:
                    image = png(env.render())
                    self.channel.send({"type": "frame", "png": image, "episode": episode,
                                       "return": episode_return, **view})  # fmt: skip
                if terminated or truncated:
                    obs, _ = env.reset()
                    episode, episode_return = episode + 1, 0.0
                step += 1
                self.done.wait(STEP_S)
        finally:
            env.close()

    def _act(self, obs: np.ndarray, space: gym.Space) -> tuple[dict[str, Any], Any]:
        """The policy's distribution at ``obs`` and an action sampled from it."""
        with self.lock:
            assert self.model is not None
            with torch.no_grad():
                dist = actor_of(self.model).distribution(
                    torch.as_tensor(obs, dtype=torch.float32)[None]
                )
                view, action = describe(dist), dist.sample()[0].numpy()
        if isinstance(space, gym.spaces.Box):
            return view, np.clip(action, space.low, space.high)
        return view, int(action)
