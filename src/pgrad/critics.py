"""Q-function networks: SAC's twin soft Q critics, and SAC's whole model (policy, critics,
their Polyak-averaged targets and the temperature) in one state dict."""

from __future__ import annotations

import copy
import math

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from pgrad.config import PolicyConfig
from pgrad.encoders import make_encoder
from pgrad.errors import PgradError
from pgrad.policies import make_policy, mlp


class TwinQ(nn.Module):
    """Q_1(s, a) and Q_2(s, a): two MLPs on [phi(s), a scaled to [-1, 1]].

    phi is one encoder shared by both (``encoders.make_encoder``: the Nature CNN, pixels over
    255, for images), trained by the critic loss only, as Stable-Baselines3's SAC has it."""

    def __init__(self, observation_space: gym.Space, action_dim: int, config: PolicyConfig):
        super().__init__()
        self.encoder = make_encoder(observation_space, config.encoder)
        sizes = [self.encoder.dim + action_dim, *config.hidden_sizes, 1]
        self.q1 = mlp(sizes, config.activation, ortho_init=config.ortho_init)
        self.q2 = mlp(sizes, config.activation, ortho_init=config.ortho_init)

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = torch.cat([self.encoder(obs), action], -1)
        return self.q1(x).squeeze(-1), self.q2(x).squeeze(-1)


SAC_GSDE_MEAN_CLIP = 2.0
"""|mu(s)| bound of SAC's gSDE policy before the squash (Stable-Baselines3's ``clip_mean``)."""


class SACModel(nn.Module):
    """The policy, the twin critics, their targets and log alpha: one state dict (``config``:
    ``algos.sac.SACConfig``). The actor has an encoder of its own (on images, a second CNN)."""

    def __init__(self, config: PolicyConfig, observation_space: gym.Space, action_space: gym.Space):
        super().__init__()
        if not isinstance(action_space, gym.spaces.Box):
            raise PgradError(f"sac needs continuous (Box) actions; this env has {action_space}")
        gsde = config.std == "gsde"  # as Stable-Baselines3's SAC has it (algos.sac)
        self.actor = make_policy(
            observation_space, action_space, config.hidden_sizes, config.activation,
            std=config.std, squash="tanh", log_std_init=config.log_std_init,
            ortho_init=config.ortho_init, gsde_sample_every=config.gsde_sample_every,
            encoder=config.encoder, gsde_learn_features=gsde,
            mean_clip=SAC_GSDE_MEAN_CLIP if gsde else None,
        )  # fmt: skip
        action_dim = int(np.prod(action_space.shape))
        self.critics = TwinQ(observation_space, action_dim, config)
        self.targets = copy.deepcopy(self.critics).requires_grad_(False)
        alpha = config.alpha if config.alpha is not None else config.alpha_init
        self.log_alpha = nn.Parameter(torch.tensor(math.log(alpha)))

    def forward(self, obs: torch.Tensor):
        return self.actor(obs)

    def act(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        return self.actor.act(obs, deterministic)
