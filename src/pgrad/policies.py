"""Action distributions pi_theta(a|s) and the networks that produce them.

A policy is a body (an MLP on the flattened observation) followed by a head that turns the
body's features into a distribution over actions:

- ``CategoricalPolicy``: pi(a|s) = softmax(logits(s))_a, for ``Discrete`` actions.
- ``MultiCategoricalPolicy``: a product of independent softmaxes, for ``MultiDiscrete`` actions.
- ``GaussianPolicy``: a ~ N(mu(s), sigma^2) per action dimension, for ``Box`` actions, with
  ``std="parameter"`` (a learned, state-independent log sigma) or ``std="state"`` (a head,
  log sigma clamped to [-20, 2]); optionally ``squash="tanh"``, a = loc + scale * tanh(u),
  with the log-det-Jacobian correction in ``log_prob``.

``ActorCritic`` adds a state-value head V(s), on the policy's body (``shared=True``) or on a
body of its own, initialised to output zero.

Every distribution returned here has ``sample()``, ``rsample()`` (reparameterised, where the
family allows), ``log_prob(a)`` and ``entropy()`` summed over action dimensions (shape: batch),
and ``mode`` (the deterministic action: argmax or mean).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.distributions import Categorical, Independent, Normal
from torch.nn import functional as F

from pgrad.errors import PgradError

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
}

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0


class UnsupportedSpaceError(PgradError, ValueError):
    """An observation or action space pgrad cannot build a policy for."""


def mlp(
    sizes: Sequence[int], activation: str = "tanh", output_activation: bool = False
) -> nn.Sequential:
    """Fully connected layers ``sizes[0] -> sizes[1] -> ... -> sizes[-1]``.

    Hidden layers are initialised orthogonally with gain sqrt(2) (as in Stable-Baselines3 and
    CleanRL) and zero bias.
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; expected one of {list(ACTIVATIONS)}")
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        linear = nn.Linear(sizes[i], sizes[i + 1])
        _init(linear, math.sqrt(2))
        layers.append(linear)
        if i < len(sizes) - 2 or output_activation:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


def _init(layer: nn.Linear, gain: float) -> nn.Linear:
    if gain == 0.0:
        nn.init.zeros_(layer.weight)
    else:
        nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


class ObservationEncoder(nn.Module):
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
                f"unsupported observation space {space}; expected Box or Discrete"
            )

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if self.one_hot:
            return F.one_hot(obs.long(), self.one_hot).float()
        return obs.float().flatten(start_dim=1)


class SquashedNormal:
    """a = loc + scale * tanh(u), u ~ N(mean, std), independently per action dimension.

    By the change of variables a = f(u),

        log pi(a|s) = sum_i [ log N(u_i; mean_i, std_i) - log(1 - tanh(u_i)^2) - log scale_i ],

    with log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)), which stays finite for large |u|.
    The entropy has no closed form; ``entropy()`` returns the one-sample estimate -log pi(a|s).
    """

    def __init__(
        self, mean: torch.Tensor, std: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor
    ):
        self.base = Normal(mean, std)
        self.loc, self.scale = loc, scale

    def _log_prob_u(self, u: torch.Tensor) -> torch.Tensor:
        log_det = 2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u)) + torch.log(self.scale)
        return (self.base.log_prob(u) - log_det).sum(-1)

    def rsample_with_log_prob(self) -> tuple[torch.Tensor, torch.Tensor]:
        """A reparameterised sample and its exact log-prob (no atanh round trip)."""
        u = self.base.rsample()
        return self.loc + self.scale * torch.tanh(u), self._log_prob_u(u)

    def rsample(self) -> torch.Tensor:
        return self.loc + self.scale * torch.tanh(self.base.rsample())

    def sample(self) -> torch.Tensor:
        with torch.no_grad():
            return self.rsample()

    def log_prob(self, action: torch.Tensor) -> torch.Tensor:
        # Invert the squash; clamp so that actions at the bounds keep a finite log-prob.
        eps = torch.finfo(action.dtype).eps
        y = ((action - self.loc) / self.scale).clamp(-1.0 + eps, 1.0 - eps)
        return self._log_prob_u(torch.atanh(y))

    def entropy(self) -> torch.Tensor:
        return -self.rsample_with_log_prob()[1]

    @property
    def mode(self) -> torch.Tensor:
        return self.loc + self.scale * torch.tanh(self.base.mean)


class MultiCategorical:
    """pi(a|s) = prod_k softmax(logits_k(s))_{a_k} for ``MultiDiscrete`` actions."""

    def __init__(self, logits: torch.Tensor, nvec: Sequence[int]):
        self.parts = [Categorical(logits=part) for part in torch.split(logits, list(nvec), dim=-1)]

    def sample(self) -> torch.Tensor:
        return torch.stack([p.sample() for p in self.parts], dim=-1)

    def log_prob(self, action: torch.Tensor) -> torch.Tensor:
        return sum(p.log_prob(a) for p, a in zip(self.parts, action.unbind(-1), strict=True))

    def entropy(self) -> torch.Tensor:
        return sum(p.entropy() for p in self.parts)

    @property
    def mode(self) -> torch.Tensor:
        return torch.stack([p.probs.argmax(-1) for p in self.parts], dim=-1)


Distribution = Categorical | Independent | SquashedNormal | MultiCategorical


def mode(dist: Distribution) -> torch.Tensor:
    """The deterministic action: argmax for softmax policies, the (squashed) mean for Gaussians."""
    if isinstance(dist, Categorical):
        return dist.probs.argmax(-1)
    return dist.mode


class Policy(nn.Module):
    """pi_theta(a|s) = head(body(encode(s))). Subclasses define ``head``."""

    def __init__(
        self,
        observation_space: gym.Space,
        hidden_sizes: Sequence[int] = (64, 64),
        activation: str = "tanh",
    ):
        super().__init__()
        self.encoder = ObservationEncoder(observation_space)
        self.body = mlp([self.encoder.dim, *hidden_sizes], activation, output_activation=True)
        self.features = hidden_sizes[-1] if hidden_sizes else self.encoder.dim

    def head(self, features: torch.Tensor) -> Distribution:
        raise NotImplementedError

    def distribution(self, obs: torch.Tensor) -> Distribution:
        return self.head(self.body(self.encoder(obs)))

    def forward(self, obs: torch.Tensor) -> tuple[Distribution, torch.Tensor | None]:
        """(pi(.|s), V(s)); a policy alone has no value estimate."""
        return self.distribution(obs), None

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        dist = self.distribution(obs)
        return mode(dist) if deterministic else dist.sample()


class CategoricalPolicy(Policy):
    """pi(a|s) = softmax(W h(s) + b)_a. The logits layer starts near zero (uniform policy)."""

    def __init__(self, observation_space: gym.Space, n_actions: int, **body):
        super().__init__(observation_space, **body)
        self.logits = _init(nn.Linear(self.features, n_actions), 0.01)

    def head(self, features: torch.Tensor) -> Categorical:
        return Categorical(logits=self.logits(features))


class MultiCategoricalPolicy(Policy):
    """One softmax head per component of a ``MultiDiscrete`` action."""

    def __init__(self, observation_space: gym.Space, nvec: Sequence[int], **body):
        super().__init__(observation_space, **body)
        self.nvec = [int(n) for n in nvec]
        self.logits = _init(nn.Linear(self.features, sum(self.nvec)), 0.01)

    def head(self, features: torch.Tensor) -> MultiCategorical:
        return MultiCategorical(self.logits(features), self.nvec)


class GaussianPolicy(Policy):
    """a ~ N(mu(s), sigma^2), or a = loc + scale * tanh(u), u ~ N(mu(s), sigma^2) with squash.

    ``std="parameter"``: log sigma is a learned vector, the same in every state.
    ``std="state"``: log sigma(s) is a linear head on the body, clamped to [-20, 2].
    ``squash="tanh"`` maps actions into the ``Box`` bounds ``[low, high]`` (scale = (high-low)/2,
    loc = (high+low)/2). Unsquashed actions may fall outside the bounds: they are clipped by the
    env wrapper when sent to the env, never here, so ``log_prob`` stays the Gaussian's.
    """

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.spaces.Box,
        std: Literal["parameter", "state"] = "parameter",
        squash: Literal["tanh"] | None = None,
        log_std_init: float = 0.0,
        **body,
    ):
        super().__init__(observation_space, **body)
        if std not in ("parameter", "state"):
            raise ValueError(f"unknown std {std!r}; expected 'parameter' or 'state'")
        if squash not in (None, "tanh"):
            raise ValueError(f"unknown squash {squash!r}; expected None or 'tanh'")
        self.shape = action_space.shape
        dim = int(np.prod(self.shape))
        self.std_mode, self.squash = std, squash
        self.mean = _init(nn.Linear(self.features, dim), 0.01)
        if std == "parameter":
            self.log_std = nn.Parameter(torch.full((dim,), float(log_std_init)))
        else:
            self.log_std_head = _init(nn.Linear(self.features, dim), 0.01)
            nn.init.constant_(self.log_std_head.bias, float(log_std_init))
        if squash == "tanh":
            low = torch.as_tensor(action_space.low, dtype=torch.float32).flatten()
            high = torch.as_tensor(action_space.high, dtype=torch.float32).flatten()
            if not (torch.isfinite(low).all() and torch.isfinite(high).all()):
                raise UnsupportedSpaceError(
                    f"squash='tanh' needs finite bounds, got {action_space}"
                )
            self.register_buffer("loc", (high + low) / 2)
            self.register_buffer("scale", (high - low) / 2)

    def head(self, features: torch.Tensor) -> Independent | SquashedNormal:
        mean = self.mean(features)
        if self.std_mode == "parameter":
            log_std = self.log_std.expand_as(mean)
        else:
            log_std = self.log_std_head(features).clamp(LOG_STD_MIN, LOG_STD_MAX)
        std = log_std.exp()
        if self.squash == "tanh":
            return SquashedNormal(mean, std, self.loc, self.scale)
        return Independent(Normal(mean, std), 1)

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        action = super().act(obs, deterministic)
        return action.reshape(action.shape[0], *self.shape)


class ActorCritic(nn.Module):
    """A policy pi(a|s) and a state-value estimate V(s).

    ``shared=True``: V(s) = w^T h(s) + b on the policy's own body h; otherwise V has an MLP body
    of its own. The value head starts at zero, so V(s) = 0 before any training.
    """

    def __init__(
        self,
        actor: Policy,
        observation_space: gym.Space,
        shared: bool = False,
        hidden_sizes: Sequence[int] = (64, 64),
        activation: str = "tanh",
    ):
        super().__init__()
        self.actor, self.shared = actor, shared
        if shared:
            features = actor.features
        else:
            self.critic_encoder = ObservationEncoder(observation_space)
            self.critic_body = mlp(
                [self.critic_encoder.dim, *hidden_sizes], activation, output_activation=True
            )
            features = hidden_sizes[-1] if hidden_sizes else self.critic_encoder.dim
        self.value_head = _init(nn.Linear(features, 1), 0.0)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        """V(s), shape (batch,)."""
        if self.shared:
            features = self.actor.body(self.actor.encoder(obs))
        else:
            features = self.critic_body(self.critic_encoder(obs))
        return self.value_head(features).squeeze(-1)

    def forward(self, obs: torch.Tensor) -> tuple[Distribution, torch.Tensor]:
        """(pi(.|s), V(s)), running a shared body once."""
        if not self.shared:
            return self.actor.distribution(obs), self.value(obs)
        features = self.actor.body(self.actor.encoder(obs))
        return self.actor.head(features), self.value_head(features).squeeze(-1)

    def distribution(self, obs: torch.Tensor) -> Distribution:
        return self.actor.distribution(obs)

    def act(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        return self.actor.act(obs, deterministic)


def make_policy(
    observation_space: gym.Space,
    action_space: gym.Space,
    hidden_sizes: Sequence[int] = (64, 64),
    activation: str = "tanh",
    std: Literal["parameter", "state"] = "parameter",
    squash: Literal["tanh"] | None = None,
    log_std_init: float = 0.0,
) -> Policy:
    """The policy family that fits ``action_space``: softmax for discrete, Gaussian for ``Box``."""
    body = {"hidden_sizes": tuple(hidden_sizes), "activation": activation}
    if isinstance(action_space, gym.spaces.Discrete):
        if int(action_space.start) != 0:
            raise UnsupportedSpaceError(
                f"unsupported action space {action_space}; expected start=0"
            )
        return CategoricalPolicy(observation_space, int(action_space.n), **body)
    if isinstance(action_space, gym.spaces.MultiDiscrete):
        return MultiCategoricalPolicy(observation_space, action_space.nvec.flatten(), **body)
    if isinstance(action_space, gym.spaces.Box):
        return GaussianPolicy(
            observation_space,
            action_space,
            std=std,
            squash=squash,
            log_std_init=log_std_init,
            **body,
        )
    raise UnsupportedSpaceError(
        f"unsupported action space {action_space}; expected Discrete, MultiDiscrete or Box"
    )
