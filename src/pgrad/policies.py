"""Action distributions pi_theta(a|s) and the networks that produce them.

A policy is a body (an MLP on the flattened observation) followed by a head that turns the
body's features into a distribution over actions:

- ``CategoricalPolicy``: pi(a|s) = softmax(logits(s))_a, for ``Discrete`` actions.
- ``MultiCategoricalPolicy``: a product of independent softmaxes, for ``MultiDiscrete`` actions.
- ``GaussianPolicy``: a ~ N(mu(s), sigma^2) per action dimension, for ``Box`` actions, with
  ``std="parameter"`` (a learned, state-independent log sigma), ``std="state"`` (a head,
  log sigma clamped to [-20, 2]) or ``std="gsde"`` (generalized state-dependent exploration,
  below); optionally ``squash="tanh"``, a = loc + scale * tanh(u), with the log-det-Jacobian
  correction in ``log_prob``.

``ActorCritic`` adds a state-value head V(s), on the policy's body (``shared=True``) or on a
body of its own, initialised to output zero.

Every distribution returned here has ``sample()``, ``rsample()`` (reparameterised, where the
family allows), ``log_prob(a)`` and ``entropy()`` summed over action dimensions (shape: batch),
and ``mode`` (the deterministic action: argmax or mean). They are small classes of our own rather
than ``torch.distributions``: each op costs microseconds of Python and dispatch on a CPU, and
these sit in every environment step and every minibatch (tests check them against
``torch.distributions``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence, Sized
from typing import TYPE_CHECKING, Literal

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from pgrad.encoders import EncoderKind, FlatEncoder, UnsupportedSpaceError, make_encoder, uses_cnn

if TYPE_CHECKING:
    from pgrad.config import PolicyConfig

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
}

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0


class MLP(nn.Sequential):
    """``nn.Sequential`` of Linear and activation layers whose forward skips the per-module call
    machinery (hooks, ``__call__``): on a CPU that overhead is as large as a small layer's math."""

    def __init__(self, *layers: nn.Module):
        super().__init__(*layers)
        self._plan: list[list] = []  # [linear, activation function or None]
        for layer in self:
            if isinstance(layer, nn.Linear):
                self._plan.append([layer, None])
            else:
                self._plan[-1][1] = _FUNCTIONS[type(layer)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for linear, activation in self._plan:
            x = F.linear(x, linear.weight, linear.bias)
            if activation is not None:
                x = activation(x)
        return x


_FUNCTIONS = {nn.Tanh: torch.tanh, nn.ReLU: F.relu, nn.ELU: F.elu, nn.GELU: F.gelu}


def mlp(
    sizes: Sequence[int],
    activation: str = "tanh",
    output_activation: bool = False,
    ortho_init: bool = True,
) -> MLP:
    """Fully connected layers ``sizes[0] -> sizes[1] -> ... -> sizes[-1]``.

    Hidden layers are initialised orthogonally with gain sqrt(2) (as in Stable-Baselines3 and
    CleanRL) and zero bias; with ``ortho_init=False``, PyTorch's default initialisation.
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; expected one of {list(ACTIVATIONS)}")
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        linear = nn.Linear(sizes[i], sizes[i + 1])
        if ortho_init:
            _init(linear, math.sqrt(2))
        layers.append(linear)
        if i < len(sizes) - 2 or output_activation:
            layers.append(ACTIVATIONS[activation]())
    return MLP(*layers)


def _init(layer: nn.Linear, gain: float) -> nn.Linear:
    if gain == 0.0:
        nn.init.zeros_(layer.weight)
    else:
        nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


ObservationEncoder = FlatEncoder  # the name before ``pgrad.encoders``


LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


def normal_log_density(x: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """Elementwise log N(x; mean, std^2) = -(x - mean)^2 / (2 std^2) - log std - log sqrt(2 pi),
    std = exp(log_std)."""
    return -0.5 * ((x - mean) * torch.exp(-log_std)).square() - log_std - LOG_SQRT_2PI


class Categorical:
    """pi(a|s) = softmax(logits)_a over the last dimension.

    log pi(a|s) = log_softmax(logits)_a;  H = -sum_a pi(a|s) log pi(a|s).
    """

    def __init__(self, logits: torch.Tensor):
        self.log_probs = logits.log_softmax(-1)

    @property
    def probs(self) -> torch.Tensor:
        return self.log_probs.exp()

    def sample(self) -> torch.Tensor:
        """Inverse-CDF sampling: the first a with u < sum_{b<=a} pi(b|s), u ~ U[0, 1).

        (``torch.multinomial`` validates its input with several reductions: slower per call.)
        """
        cdf = self.probs.cumsum(-1)
        u = torch.rand((*cdf.shape[:-1], 1), dtype=cdf.dtype, device=cdf.device)
        # Rounding can leave cdf[-1] a hair below 1: clamp to the last action.
        return (cdf <= u).sum(-1).clamp_(max=cdf.shape[-1] - 1)

    def log_prob(self, action: torch.Tensor) -> torch.Tensor:
        return self.log_probs.gather(-1, action.long().unsqueeze(-1)).squeeze(-1)

    def entropy(self) -> torch.Tensor:
        # A masked action (logit -inf) has pi = 0 and adds 0 log 0 = 0; the clamp keeps
        # 0 * -inf from becoming NaN, in the value and in its gradient.
        log_probs = self.log_probs.clamp(min=torch.finfo(self.log_probs.dtype).min)
        return -(self.probs * log_probs).sum(-1)

    @property
    def mode(self) -> torch.Tensor:
        return self.log_probs.argmax(-1)


class DiagonalGaussian:
    """a ~ N(mean, diag(std^2)), std = exp(log_std); log-prob and entropy summed over dimensions.

    log pi(a|s) = sum_i log N(a_i; mean_i, std_i^2);  H = sum_i (1/2 + log sqrt(2 pi) + log std_i).
    """

    def __init__(self, mean: torch.Tensor, log_std: torch.Tensor):
        self.mean, self.log_std = mean, log_std

    @property
    def stddev(self) -> torch.Tensor:
        return self.log_std.exp()

    def rsample(self) -> torch.Tensor:
        return self.mean + self.stddev * torch.randn_like(self.mean)

    def sample(self) -> torch.Tensor:
        with torch.no_grad():
            return self.rsample()

    def log_prob(self, action: torch.Tensor) -> torch.Tensor:
        return normal_log_density(action, self.mean, self.log_std).sum(-1)

    def entropy(self) -> torch.Tensor:
        return (0.5 + LOG_SQRT_2PI + self.log_std).expand_as(self.mean).sum(-1)

    @property
    def mode(self) -> torch.Tensor:
        return self.mean


class SquashedNormal:
    """a = loc + scale * tanh(u), u ~ N(mean, std), independently per action dimension.

    By the change of variables a = f(u),

        log pi(a|s) = sum_i [ log N(u_i; mean_i, std_i) - log(1 - tanh(u_i)^2) - log scale_i ],

    with log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)), which stays finite for large |u|.
    The entropy has no closed form; ``entropy()`` returns the one-sample estimate -log pi(a|s).
    """

    def __init__(
        self, mean: torch.Tensor, log_std: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor
    ):
        self.base = DiagonalGaussian(mean, log_std)
        self.loc, self.scale = loc, scale

    def _log_prob_u(self, u: torch.Tensor) -> torch.Tensor:
        log_det = 2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u)) + torch.log(self.scale)
        return (normal_log_density(u, self.base.mean, self.base.log_std) - log_det).sum(-1)

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
        self.parts = [Categorical(part) for part in torch.split(logits, list(nvec), dim=-1)]

    def sample(self) -> torch.Tensor:
        return torch.stack([p.sample() for p in self.parts], dim=-1)

    def log_prob(self, action: torch.Tensor) -> torch.Tensor:
        return sum(p.log_prob(a) for p, a in zip(self.parts, action.unbind(-1), strict=True))

    def entropy(self) -> torch.Tensor:
        return sum(p.entropy() for p in self.parts)

    @property
    def mode(self) -> torch.Tensor:
        return torch.stack([p.mode for p in self.parts], dim=-1)


Distribution = Categorical | DiagonalGaussian | SquashedNormal | MultiCategorical


def mode(dist: Distribution) -> torch.Tensor:
    """The deterministic action: argmax for softmax policies, the (squashed) mean for Gaussians."""
    return dist.mode


class Policy(nn.Module):
    """pi_theta(a|s) = head(body(encode(s))). Subclasses define ``head``."""

    def __init__(
        self,
        observation_space: gym.Space,
        hidden_sizes: Sequence[int] = (64, 64),
        activation: str = "tanh",
        ortho_init: bool = True,
        encoder: EncoderKind = "auto",
    ):
        super().__init__()
        self.encoder = make_encoder(observation_space, encoder)
        self.body = mlp(
            [self.encoder.dim, *hidden_sizes], activation, output_activation=True,
            ortho_init=ortho_init,
        )  # fmt: skip
        self.features = hidden_sizes[-1] if hidden_sizes else self.encoder.dim
        self.ortho_init = ortho_init

    def _head_layer(self, out_features: int) -> nn.Linear:
        """A linear head on the body; orthogonal with gain 0.01 (near-uniform / near-zero-mean
        actions at the start) unless ``ortho_init=False``."""
        layer = nn.Linear(self.features, out_features)
        return _init(layer, 0.01) if self.ortho_init else layer

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
        self.logits = self._head_layer(n_actions)

    def head(self, features: torch.Tensor) -> Categorical:
        return Categorical(self.logits(features))


class MultiCategoricalPolicy(Policy):
    """One softmax head per component of a ``MultiDiscrete`` action."""

    def __init__(self, observation_space: gym.Space, nvec: Sequence[int], **body):
        super().__init__(observation_space, **body)
        self.nvec = [int(n) for n in nvec]
        self.logits = self._head_layer(sum(self.nvec))

    def head(self, features: torch.Tensor) -> MultiCategorical:
        return MultiCategorical(self.logits(features), self.nvec)


class GaussianPolicy(Policy):
    """a ~ N(mu(s), sigma^2), or a = loc + scale * tanh(u), u ~ N(mu(s), sigma^2) with squash.

    ``std="parameter"``: log sigma is a learned vector, the same in every state.
    ``std="state"``: log sigma(s) is a linear head on the body, clamped to [-20, 2].
    ``std="gsde"``: generalized state-dependent exploration (Raffin et al., 2021). The noise is
    a linear function of the body's features z(s), a = mu(s) + theta^T z(s), with a matrix
    theta ~ N(0, sigma_ij^2) (sigma = exp(log_std), a learned features x actions matrix) drawn
    per env and held for several steps (``reset_noise``), so exploration is smooth in time.
    For one draw of theta the action at s is deterministic, mu(s) + theta^T z(s); over draws of
    theta it is N(mu(s), v(s)), v_j(s) = sum_i z_i(s)^2 sigma_ij^2 (+1e-6), and that marginal is
    the density ``log_prob`` uses (as Stable-Baselines3 does). z is detached there, so the
    variance trains sigma only, unless ``gsde_learn_features`` (Stable-Baselines3's SAC: the
    variance's gradient trains the body too). With ``squash="tanh"`` (SAC), u = mu(s) +
    theta^T z(s) is squashed as below, and the density is ``SquashedNormal``'s with that
    marginal N(mu, v).
    ``mean_clip``: mu(s) is clamped to [-mean_clip, mean_clip] (Stable-Baselines3's SAC with
    gSDE: 2), so that a squashed mean cannot drift deep into tanh's flat tails.
    ``squash="tanh"`` maps actions into the ``Box`` bounds ``[low, high]`` (scale = (high-low)/2,
    loc = (high+low)/2). Unsquashed actions may fall outside the bounds: they are clipped by the
    env wrapper when sent to the env, never here, so ``log_prob`` stays the Gaussian's.
    """

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.spaces.Box,
        std: Literal["parameter", "state", "gsde"] = "parameter",
        squash: Literal["tanh"] | None = None,
        log_std_init: float = 0.0,
        gsde_sample_every: int = 0,
        gsde_learn_features: bool = False,
        mean_clip: float | None = None,
        **body,
    ):
        super().__init__(observation_space, **body)
        self.gsde_learn_features, self.mean_clip = gsde_learn_features, mean_clip
        if std not in ("parameter", "state", "gsde"):
            raise ValueError(f"unknown std {std!r}; expected 'parameter', 'state' or 'gsde'")
        if squash not in (None, "tanh"):
            raise ValueError(f"unknown squash {squash!r}; expected None or 'tanh'")
        self.shape = action_space.shape
        dim = int(np.prod(self.shape))
        self.std_mode, self.squash = std, squash
        self.mean = self._head_layer(dim)
        if std == "parameter":
            self.log_std = nn.Parameter(torch.full((dim,), float(log_std_init)))
        elif std == "gsde":
            self.log_std = nn.Parameter(torch.full((self.features, dim), float(log_std_init)))
            self.noise: torch.Tensor | None = None  # theta per env: (envs, features, dim)
            self.noise_age, self.gsde_sample_every = 0, gsde_sample_every
        else:
            self.log_std_head = self._head_layer(dim)
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

    def _mean(self, features: torch.Tensor) -> torch.Tensor:
        mean = self.mean(features)
        return mean if self.mean_clip is None else mean.clamp(-self.mean_clip, self.mean_clip)

    def head(self, features: torch.Tensor) -> DiagonalGaussian | SquashedNormal:
        mean = self._mean(features)
        if self.std_mode == "parameter":
            log_std = self.log_std.expand_as(mean)
        elif self.std_mode == "gsde":
            z = features if self.gsde_learn_features else features.detach()
            log_std = 0.5 * torch.log(gsde_variance(z, self.log_std))
        else:
            log_std = self.log_std_head(features).clamp(LOG_STD_MIN, LOG_STD_MAX)
        if self.squash == "tanh":
            return SquashedNormal(mean, log_std, self.loc, self.scale)
        return DiagonalGaussian(mean, log_std)

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        if self.std_mode == "gsde" and not deterministic:
            features = self.body(self.encoder(obs))
            if gsde_noise_due(self.noise, len(obs), self.noise_age, self.gsde_sample_every):
                self.reset_noise(len(obs))
            self.noise_age += 1
            action = self._mean(features) + torch.einsum("bi,bij->bj", features, self.noise)
            if self.squash == "tanh":
                action = self.loc + self.scale * torch.tanh(action)
        else:
            action = super().act(obs, deterministic)
        return action.reshape(action.shape[0], *self.shape)

    def reset_noise(self, n: int, generator: torch.Generator | None = None) -> None:
        """gSDE: draw a new theta ~ N(0, sigma^2) for each of ``n`` envs."""
        sigma = self.log_std.detach().exp()
        self.noise = sigma * torch.randn((n, *sigma.shape), generator=generator)
        self.noise_age = 0


GSDE_EPS = 1e-6


def gsde_noise_due(noise: Sized | None, n: int, age: int, every: int) -> bool:
    """Whether gSDE must draw new exploration matrices for ``n`` envs: none held, held for a
    different number of envs, or held ``every`` steps already (``every`` > 0)."""
    return noise is None or len(noise) != n or 0 < every <= age


def gsde_variance(features: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """v_j(s) = sum_i z_i(s)^2 exp(log_std_ij)^2 + GSDE_EPS: the variance of theta^T z(s)."""
    return features.square() @ torch.exp(2.0 * log_std) + GSDE_EPS


class ActorCritic(nn.Module):
    """A policy pi(a|s) and a state-value estimate V(s).

    ``shared=True``: V(s) = w^T h(s) + b on the policy's own body h; otherwise V has an MLP body
    of its own. The value head's weights w start orthogonal with ``value_head_gain`` (a unit
    row times the gain), b = 0; the default gain 0 gives V(s) = 0 before any training.
    """

    def __init__(
        self,
        actor: Policy,
        observation_space: gym.Space,
        shared: bool = False,
        hidden_sizes: Sequence[int] = (64, 64),
        activation: str = "tanh",
        ortho_init: bool = True,
        encoder: EncoderKind = "auto",
        value_head_gain: float = 0.0,
    ):
        super().__init__()
        self.actor, self.shared = actor, shared
        if shared:
            features = actor.features
        else:
            self.critic_encoder = make_encoder(observation_space, encoder)
            self.critic_body = mlp(
                [self.critic_encoder.dim, *hidden_sizes], activation, output_activation=True,
                ortho_init=ortho_init,
            )  # fmt: skip
            features = hidden_sizes[-1] if hidden_sizes else self.critic_encoder.dim
        self.value_head = _init(nn.Linear(features, 1), value_head_gain)

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


def actor_of(model: nn.Module) -> Policy:
    """The policy pi(a|s) of a model: the model itself, or its ``actor`` (an actor-critic, or
    SAC's policy with its Q-functions)."""
    if isinstance(model, Policy):
        return model
    actor = getattr(model, "actor", None)
    if not isinstance(actor, Policy):
        raise TypeError(f"{type(model).__name__} has no policy")
    return actor


def make_policy(
    observation_space: gym.Space,
    action_space: gym.Space,
    hidden_sizes: Sequence[int] = (64, 64),
    activation: str = "tanh",
    std: Literal["parameter", "state", "gsde"] = "parameter",
    squash: Literal["tanh"] | None = None,
    log_std_init: float = 0.0,
    ortho_init: bool = True,
    gsde_sample_every: int = 0,
    encoder: EncoderKind = "auto",
    **gaussian,
) -> Policy:
    """The policy family that fits ``action_space``: softmax for discrete, Gaussian for ``Box``
    (``gaussian``: ``GaussianPolicy``'s further options); its encoder from
    ``observation_space`` (``encoders.make_encoder``)."""
    body = {"hidden_sizes": tuple(hidden_sizes), "activation": activation, "ortho_init": ortho_init,
            "encoder": encoder}  # fmt: skip
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
            gsde_sample_every=gsde_sample_every,
            **gaussian,
            **body,
        )
    raise UnsupportedSpaceError(
        f"unsupported action space {action_space}; expected Discrete, MultiDiscrete or Box"
    )


def build_model(
    config: PolicyConfig, observation_space: gym.Space, action_space: gym.Space, critic: bool
) -> Policy | ActorCritic:
    """The policy ``config`` describes for ``action_space``, with a critic V(s) if ``critic``.
    ``shared: null`` (the default) shares a CNN trunk between actor and critic, not an MLP."""
    body = {
        "hidden_sizes": config.hidden_sizes,
        "activation": config.activation,
        "ortho_init": config.ortho_init,
        "encoder": config.encoder,
    }
    policy = make_policy(
        observation_space,
        action_space,
        std=config.std,
        squash=config.squash,
        log_std_init=config.log_std_init,
        gsde_sample_every=config.gsde_sample_every,
        **body,
    )
    if not critic:
        return policy
    shared = config.shared
    if shared is None:
        shared = uses_cnn(observation_space, config.encoder)
    return ActorCritic(
        policy, observation_space, shared=shared, value_head_gain=config.value_head_gain, **body
    )


def build_actor_critic(
    config: PolicyConfig, observation_space: gym.Space, action_space: gym.Space
) -> ActorCritic:
    return build_model(config, observation_space, action_space, critic=True)
