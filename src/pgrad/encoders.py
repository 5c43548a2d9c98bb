"""Observation encoders: the first part of every policy and critic, observation -> features.

- ``FlatEncoder``: a ``Box`` flattened, a ``Discrete`` one-hot (then an MLP body follows);
- ``NatureCNN``: images (Mnih et al., 2015): conv 8x8/4 (32), conv 4x4/2 (64), conv 3x3/1
  (64), a linear layer to 512, ReLU after each; ``uint8`` pixels scaled by 1/255 inside the
  network, so rollouts store and move bytes;
- ``DictEncoder``: one encoder per key of a ``Dict`` space, features concatenated.

``make_encoder`` chooses from the space (``kind="auto"``): an image-like ``Box`` of rank 3 gets
the CNN, anything else the flat encoder. Every encoder has ``dim``, its number of features.
"""

from __future__ import annotations

import math
from typing import Literal

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from pgrad.errors import PgradError

EncoderKind = Literal["auto", "mlp", "cnn"]


class UnsupportedSpaceError(PgradError, ValueError):
    """An observation or action space pgrad cannot build a policy for."""


class FlatEncoder(nn.Module):
    """Maps raw observations to flat float vectors: ``Box`` flattened, ``Discrete`` one-hot."""

    def __init__(self, space: gym.Space):
        super().__init__()
        if isinstance(space, gym.spaces.Box):
            self.one_hot = 0
            self.dim = int(np.prod(space.shape))
        elif isinstance(space, gym.spaces.Discrete):
            self.one_hot = int(space.n)
            self.dim = int(space.n)
        else:
            raise UnsupportedSpaceError(
                f"unsupported observation space {space}; expected Box, Discrete or Dict"
            )

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if self.one_hot:
            return F.one_hot(obs.long(), self.one_hot).float()
        return obs.float().flatten(start_dim=1)


MIN_SIDE = 36
"""The smallest height and width the Nature CNN takes: 8x8/4, 4x4/2 and 3x3/1 leave 1x1."""
MAX_CHANNELS = 16


def is_image(space: gym.Space) -> bool:
    """A ``Box`` of rank 3 with at most 16 channels, first or last, and height and width of at
    least ``MIN_SIDE`` pixels: (C, H, W) or (H, W, C)."""
    return isinstance(space, gym.spaces.Box) and channels_last(space) is not None


def channels_last(space: gym.spaces.Box) -> bool | None:
    """True for (H, W, C), False for (C, H, W), None if neither looks like an image."""
    if len(space.shape) != 3:
        return None
    first, *_, last = space.shape
    if last <= MAX_CHANNELS and min(space.shape[:2]) >= MIN_SIDE:
        return True
    if first <= MAX_CHANNELS and min(space.shape[1:]) >= MIN_SIDE:
        return False
    return None


def storage_dtype(dtype: np.dtype | type) -> np.dtype:
    """How observations of ``dtype`` are stored and handed to a network: ``uint8`` pixels stay
    bytes (a quarter of float32's memory; ``NatureCNN`` divides them by 255), anything else is
    float32."""
    return np.dtype(np.uint8) if np.dtype(dtype) == np.uint8 else np.dtype(np.float32)


class NatureCNN(nn.Module):
    """phi(s) = ReLU(W relu(conv3(relu(conv2(relu(conv1(s / 255))))))) in R^512 (the DQN
    paper's network, CleanRL's and Stable-Baselines3's Atari encoder).

    ``uint8`` observations are divided by 255 here; float ones are taken as they are. Channel-last
    images (H, W, C) are permuted to (C, H, W). Orthogonal init with gain sqrt(2), zero bias."""

    def __init__(self, space: gym.spaces.Box, features: int = 512):
        super().__init__()
        last = channels_last(space)
        if last is None:
            raise UnsupportedSpaceError(
                f"observation space {space} is not an image for the Nature CNN; expected a "
                f"Box (C, H, W) or (H, W, C) with C <= {MAX_CHANNELS} and H, W >= {MIN_SIDE}"
            )
        self.channels_last = last
        c, h, w = (space.shape[2], *space.shape[:2]) if last else space.shape
        self.scale = 1 / 255 if space.dtype == np.uint8 else 1.0
        self.convs = nn.Sequential(
            nn.Conv2d(c, 32, 8, stride=4), nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(),
            nn.Flatten(),
        )  # fmt: skip
        with torch.no_grad():
            flat = self.convs(torch.zeros(1, c, h, w)).shape[1]
        self.linear = nn.Linear(flat, features)
        for m in [*self.convs, self.linear]:
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.orthogonal_(m.weight, math.sqrt(2))
                nn.init.zeros_(m.bias)
        self.dim = features

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = obs.float()
        if self.scale != 1.0:
            x = x * self.scale
        if self.channels_last:
            x = x.permute(0, 3, 1, 2)
        # The same numbers in (N, H, W, C) memory order: oneDNN's CPU convolutions run ~1.25x
        # faster on it, forward and backward (benchmarks/atari.py; the result is unchanged).
        x = x.contiguous(memory_format=torch.channels_last)
        return F.relu(self.linear(self.convs(x)))


class DictEncoder(nn.Module):
    """phi(s) = [phi_k(s_k) for each key k, sorted]: one encoder per key, concatenated."""

    def __init__(self, space: gym.spaces.Dict, kind: EncoderKind = "auto"):
        super().__init__()
        self.keys = sorted(space.spaces)
        self.encoders = nn.ModuleDict({k: make_encoder(space[k], _for_key(space[k], kind))
                                       for k in self.keys})  # fmt: skip
        self.dim = sum(e.dim for e in self.encoders.values())

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([self.encoders[k](obs[k]) for k in self.keys], dim=-1)


def _for_key(space: gym.Space, kind: EncoderKind) -> EncoderKind:
    """In a ``Dict``, ``cnn`` forces the CNN on the keys of rank 3 only: the others stay flat."""
    rank3 = isinstance(space, gym.spaces.Box) and len(space.shape) == 3
    return "mlp" if kind == "cnn" and not rank3 else kind


def make_encoder(space: gym.Space, kind: EncoderKind = "auto") -> nn.Module:
    """The encoder for ``space``: ``auto`` picks the CNN for an image, else the flat encoder;
    ``cnn``/``mlp`` force one (``cnn`` on a space that is not an image is an error; in a
    ``Dict``, ``cnn`` applies to its keys of rank 3)."""
    if isinstance(space, gym.spaces.Dict):
        return DictEncoder(space, kind)
    if kind == "cnn" or (kind == "auto" and is_image(space)):
        return NatureCNN(space)
    return FlatEncoder(space)


def uses_cnn(space: gym.Space, kind: EncoderKind = "auto") -> bool:
    """Whether ``make_encoder(space, kind)`` contains a CNN."""
    if isinstance(space, gym.spaces.Dict):
        return any(uses_cnn(s, _for_key(s, kind)) for s in space.spaces.values())
    return kind == "cnn" or (kind == "auto" and is_image(space))
