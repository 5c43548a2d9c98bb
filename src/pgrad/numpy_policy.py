"""Acting in NumPy: a policy's forward pass, sampling and log-prob on its live parameters.

Collecting experience calls the policy on a handful of observations at a time, thousands of
times per second. There a torch op costs several microseconds of dispatch however small its
tensors, and a NumPy op a fraction of that: ``NumpyPolicy`` runs the same network on NumPy views
of the model's parameters (no copies: updates show through), so the rollout spends its time in
the env. Training still runs in torch, on the stored observations and actions; the log-probs and
values stored here agree with torch's to float32 rounding (tests check each policy family).

Models it does not know (another activation, a custom policy, a GPU) fall back to torch:
``NumpyPolicy.of`` returns None for them.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from pgrad import policies
from pgrad.policies import (
    GSDE_EPS,
    LOG_STD_MAX,
    LOG_STD_MIN,
    MLP,
    ActorCritic,
    CategoricalPolicy,
    GaussianPolicy,
    MultiCategoricalPolicy,
    ObservationEncoder,
    Policy,
    actor_of,
    gsde_noise_due,
)

LOG_SQRT_2PI = np.float32(policies.LOG_SQRT_2PI)
LOG_2 = np.float32(math.log(2.0))

_ACTIVATIONS = {
    nn.Tanh: np.tanh,
    nn.ReLU: lambda x: np.maximum(x, np.float32(0.0)),
    nn.ELU: lambda x: np.where(x > 0, x, np.expm1(x)),
}


def array(p: torch.Tensor) -> np.ndarray:
    """A NumPy view of a CPU tensor's memory (no copy: changes show through both ways)."""
    return p.detach().numpy()


def encode(obs: np.ndarray, one_hot: int) -> np.ndarray:
    """``ObservationEncoder`` in NumPy: a batch of raw observations as flat float32 rows
    (one-hot of width ``one_hot`` for ``Discrete`` observations)."""
    if one_hot:
        return np.eye(one_hot, dtype=np.float32)[obs.astype(np.int64)]
    return obs.reshape(len(obs), -1).astype(np.float32, copy=False)


class _Linear:
    def __init__(self, layer: nn.Linear):
        self.weight_t, self.bias = array(layer.weight).T, array(layer.bias)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return x @ self.weight_t + self.bias


class _Body:
    """encoder + MLP: flat float32 features of a batch of raw observations."""

    def __init__(self, encoder: ObservationEncoder, body: MLP):
        self.one_hot = encoder.one_hot
        self.layers = []
        for layer in body:
            if isinstance(layer, nn.Linear):
                self.layers.append(_Linear(layer))
            else:
                self.layers.append(_ACTIVATIONS[type(layer)])

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        x = encode(obs, self.one_hot)
        for layer in self.layers:
            x = layer(x)
        return x


class _SideBySide:
    """The actor's and the critic's MLPs (same sizes and activation, separate weights) run as
    one network of twice the width: the first layer's weights side by side, the later ones and
    the heads block-diagonal. On a handful of observations every NumPy call costs about the same
    whatever its size, so one network instead of two halves the calls. The block matrices are
    copies: ``refresh`` after the parameters change."""

    def __init__(self, actor: Policy, critic: ActorCritic, heads: list[nn.Linear]):
        self.one_hot = actor.encoder.one_hot
        # per layer, the Linear modules whose outputs sit side by side (the heads: several)
        self.actor_layers = [[m] for m in actor.body if isinstance(m, nn.Linear)] + [heads]
        self.critic_layers = [[m] for m in critic.critic_body if isinstance(m, nn.Linear)]
        self.critic_layers.append([critic.value_head])
        self.activation = next(
            (_ACTIVATIONS[type(m)] for m in actor.body if type(m) in _ACTIVATIONS), None
        )
        self.refresh()

    @staticmethod
    def applies(actor: Policy, model: nn.Module) -> bool:
        if not isinstance(model, ActorCritic) or model.shared:
            return False
        if getattr(actor, "std_mode", None) == "gsde":  # needs the body's features
            return False
        a, c = list(actor.body), list(model.critic_body)
        same_layers = len(a) == len(c) and all(
            type(x) is type(y)
            and (not isinstance(x, nn.Linear) or x.weight.shape == y.weight.shape)
            for x, y in zip(a, c, strict=True)
        )
        return same_layers and actor.encoder.one_hot == model.critic_encoder.one_hot

    def refresh(self) -> None:
        self.weights: list[tuple[np.ndarray, np.ndarray]] = []
        for i, (a, c) in enumerate(zip(self.actor_layers, self.critic_layers, strict=True)):
            wa = np.concatenate([array(m.weight).T for m in a], 1)
            wc = np.concatenate([array(m.weight).T for m in c], 1)
            bias = np.concatenate([array(m.bias) for m in a + c])
            if i == 0:
                self.weights.append((np.concatenate([wa, wc], 1), bias))
                continue
            w = np.zeros((wa.shape[0] + wc.shape[0], wa.shape[1] + wc.shape[1]), np.float32)
            w[: wa.shape[0], : wa.shape[1]] = wa
            w[wa.shape[0] :, wa.shape[1] :] = wc
            self.weights.append((w, bias))

    def __call__(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(the actor's head outputs side by side, V(s))."""
        x = encode(obs, self.one_hot)
        for k, (w, bias) in enumerate(self.weights):
            x = x @ w + bias
            if k < len(self.weights) - 1 and self.activation is not None:
                x = self.activation(x)
        return x[:, :-1], x[:, -1]


def _supported(model: nn.Module) -> bool:
    known = (nn.Linear, MLP, ObservationEncoder, Policy, ActorCritic)
    return all(isinstance(m, known) or type(m) in _ACTIVATIONS for m in model.modules())


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def _categorical(
    logits: np.ndarray, rng: np.random.Generator, deterministic: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(a, log pi(a)) with a ~ softmax(logits) by inverse CDF, or a = argmax."""
    log_probs = _log_softmax(logits)
    if deterministic:
        action = log_probs.argmax(-1)
    else:
        cdf = np.exp(log_probs).cumsum(-1)
        u = rng.random((len(cdf), 1), dtype=np.float32)
        action = np.minimum((cdf <= u).sum(-1), cdf.shape[-1] - 1)
    return action, log_probs[np.arange(len(action)), action]


class NumpyPolicy:
    """``model``'s actions, their log-probs and V(s) (None without a critic), in NumPy."""

    def __init__(self, model: Policy | ActorCritic, rng: np.random.Generator):
        self.rng = rng
        actor = actor_of(model)
        self.actor = actor
        self.noise: np.ndarray | None = None  # gSDE's theta per env, while held
        self.body = _Body(actor.encoder, actor.body)
        self.critic_body = self.value_head = None
        if isinstance(model, ActorCritic):
            self.value_head = _Linear(model.value_head)
            if not model.shared:
                self.critic_body = _Body(model.critic_encoder, model.critic_body)
        self.discrete = isinstance(actor, (CategoricalPolicy, MultiCategoricalPolicy))
        if self.discrete:
            heads = [actor.logits]
            self.nvec = getattr(actor, "nvec", None)
        else:
            heads = [actor.mean]
            if actor.std_mode == "parameter":
                self.log_std = array(actor.log_std)
            elif actor.std_mode == "gsde":
                self.gsde_log_std = array(actor.log_std)
                self.noise_age, self.gsde_sample_every = 0, actor.gsde_sample_every
            else:
                heads.append(actor.log_std_head)
            if actor.squash == "tanh":
                self.loc, self.scale = array(actor.loc), array(actor.scale)
        self.heads = [_Linear(head) for head in heads]
        self.head_splits = list(np.cumsum([head.out_features for head in heads])[:-1])
        self.side_by_side = (
            _SideBySide(actor, model, heads) if _SideBySide.applies(actor, model) else None
        )

    def refresh(self) -> None:
        """Take up changed parameter values (views see them already; the side-by-side copies
        do not), and (gSDE) draw new exploration matrices at the next action."""
        if self.side_by_side is not None:
            self.side_by_side.refresh()
        self.noise = None

    @staticmethod
    def of(model: nn.Module, rng: np.random.Generator) -> NumpyPolicy | None:
        """A NumPy twin of ``model``, or None where it has parts this module does not know."""
        try:
            actor = actor_of(model)
        except TypeError:  # a custom model: act through torch
            return None
        known = (CategoricalPolicy, MultiCategoricalPolicy, GaussianPolicy)
        acting = model if isinstance(model, ActorCritic) else actor  # what the twin runs
        on_cpu = all(p.device.type == "cpu" for p in acting.parameters())
        if type(actor) not in known or not on_cpu or not _supported(acting):
            return None
        return NumpyPolicy(model, rng)

    def __call__(
        self, obs: np.ndarray, deterministic: bool = False
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(actions, log pi(a|s), V(s) or None) for a batch of raw observations."""
        value = features = None
        if self.side_by_side is not None:
            outputs, value = self.side_by_side(obs)
            heads = np.split(outputs, self.head_splits, axis=1) if self.head_splits else [outputs]
        else:
            features = self.body(obs)
            heads = [head(features) for head in self.heads]
            if self.value_head is not None:
                critic = features if self.critic_body is None else self.critic_body(obs)
                value = self.value_head(critic)[:, 0]
        if self.discrete:
            return (*self._discrete(heads[0], deterministic), value)
        if hasattr(self, "gsde_log_std"):
            return (*self._gsde(features, heads[0], deterministic), value)
        return (*self._gaussian(heads, deterministic), value)

    def _gsde(
        self, features: np.ndarray, mean: np.ndarray, deterministic: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """a = mean + theta^T z(s) with this env's theta (a = mean if ``deterministic``);
        log N(a; mean, v(s)), v_j = sum_i z_i^2 sigma_ij^2 + eps (``policies.GaussianPolicy``,
        std="gsde")."""
        n, every = len(features), self.gsde_sample_every
        if deterministic:
            eps = np.zeros_like(mean)
        else:
            if gsde_noise_due(self.noise, n, self.noise_age, every):
                sigma = np.exp(self.gsde_log_std)
                shape = (n, *sigma.shape)
                self.noise = sigma * self.rng.standard_normal(shape, dtype=np.float32)
                self.noise_age = 0
            self.noise_age += 1
            eps = np.einsum("bi,bij->bj", features, self.noise)
        variance = np.square(features) @ np.exp(2.0 * self.gsde_log_std) + np.float32(GSDE_EPS)
        log_prob = -0.5 * eps * eps / variance - 0.5 * np.log(variance) - LOG_SQRT_2PI
        return mean + eps, log_prob.sum(-1)

    def value(self, obs: np.ndarray) -> np.ndarray:
        if self.side_by_side is not None:
            return self.side_by_side(obs)[1]
        features = self.body(obs) if self.critic_body is None else self.critic_body(obs)
        return self.value_head(features)[:, 0]

    def _discrete(self, logits: np.ndarray, deterministic: bool) -> tuple[np.ndarray, ...]:
        if self.nvec is None:
            return _categorical(logits, self.rng, deterministic)
        parts = np.split(logits, np.cumsum(self.nvec)[:-1], axis=-1)
        drawn = [_categorical(part, self.rng, deterministic) for part in parts]
        return np.stack([a for a, _ in drawn], -1), sum(lp for _, lp in drawn)

    def _gaussian(self, heads: list[np.ndarray], deterministic: bool) -> tuple[np.ndarray, ...]:
        """u = mean + std * eps; log N(u) = -eps^2 / 2 - log std - log sqrt(2 pi) per dimension,
        and with tanh squashing a = loc + scale * tanh(u) minus the log-det-Jacobian
        log(scale (1 - tanh(u)^2)) = log scale + 2 (log 2 - u - softplus(-2u))."""
        mean = heads[0]
        if hasattr(self, "log_std"):
            log_std = np.broadcast_to(self.log_std, mean.shape)
        else:
            log_std = np.clip(heads[1], LOG_STD_MIN, LOG_STD_MAX)
        if deterministic:
            eps = np.zeros_like(mean)
        else:
            eps = self.rng.standard_normal(mean.shape, dtype=np.float32)
        u = mean + np.exp(log_std) * eps
        log_prob = -0.5 * eps * eps - log_std - LOG_SQRT_2PI
        if self.actor.squash != "tanh":
            return u, log_prob.sum(-1)
        log_det = 2.0 * (LOG_2 - u - np.logaddexp(np.float32(0.0), -2.0 * u)) + np.log(self.scale)
        return self.loc + self.scale * np.tanh(u), (log_prob - log_det).sum(-1)
