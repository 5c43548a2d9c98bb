"""Acting in NumPy: a policy's forward pass, sampling and log-prob on its live parameters.

Collecting experience calls the policy on a handful of observations at a time, thousands of
times per second. There a torch op costs several microseconds of dispatch however small its
tensors, and a NumPy op a fraction of that: ``NumpyPolicy`` runs the same network on NumPy views
of the model's parameters (no copies: updates show through), so the rollout spends its time in
the env. Training still runs in torch, on the stored observations and actions; the log-probs and
values stored here agree with torch's to float32 rounding (tests check each policy family).
"""

from __future__ import annotations

import numpy as np
from torch import nn

from pgrad.fast import numpy_ops as ops
from pgrad.fast.numpy_ops import LinearStack
from pgrad.policies import (
    LOG_STD_MAX,
    LOG_STD_MIN,
    ActorCritic,
    CategoricalPolicy,
    MultiCategoricalPolicy,
    Policy,
    actor_of,
    gsde_noise_due,
)


def _linears(body: nn.Module) -> list[nn.Module]:
    return [m for m in body if isinstance(m, nn.Linear)]


def _activations(body: nn.Module) -> list[nn.Module]:
    return [m for m in body if not isinstance(m, nn.Linear)]


class _SideBySide:
    """The actor's and the critic's MLPs (same sizes and activation, separate weights) as one
    ``LinearStack`` of twice the width: the first layer's weights side by side, the later ones
    and the heads block-diagonal. On a handful of observations every NumPy call costs about the
    same whatever its size, so one network instead of two halves the calls. The block matrices
    are copies: ``refresh`` after the parameters change."""

    def __init__(self, actor: Policy, model: ActorCritic, heads: list[nn.Linear]):
        # per layer, the Linear modules whose outputs sit side by side (the heads: several)
        self.actor_layers = [[m] for m in _linears(actor.body)] + [heads]
        self.critic_layers = [[m] for m in _linears(model.critic_body)] + [[model.value_head]]
        activations = _activations(actor.body)
        self.activation = ops.ACTIVATIONS[type(activations[0])] if activations else None
        self.refresh()

    def refresh(self) -> None:
        layers, last = [], len(self.actor_layers) - 1
        for i, (a, c) in enumerate(zip(self.actor_layers, self.critic_layers, strict=True)):
            wa = np.concatenate([ops.array(m.weight).T for m in a], 1)
            wc = np.concatenate([ops.array(m.weight).T for m in c], 1)
            bias = np.concatenate([ops.array(m.bias) for m in a + c])
            (ra, ca), (rc, cc) = wa.shape, wc.shape
            if i == 0:
                weight = np.concatenate([wa, wc], 1)
            else:
                weight = np.zeros((ra + rc, ca + cc), np.float32)
                weight[:ra, :ca] = wa
                weight[ra:, ca:] = wc
            layers.append((weight, bias, self.activation if i < last else None))
        self.stack = LinearStack(layers)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.stack(x)


def _side_by_side_applies(actor: Policy, model: nn.Module) -> bool:
    if not isinstance(model, ActorCritic) or model.shared:
        return False
    if getattr(actor, "std_mode", None) == "gsde":  # needs the body's features
        return False
    a, c = list(actor.body), list(model.critic_body)
    same_layers = len(a) == len(c) and all(
        type(x) is type(y) and (not isinstance(x, nn.Linear) or x.weight.shape == y.weight.shape)
        for x, y in zip(a, c, strict=True)
    )
    return same_layers and actor.encoder.one_hot == model.critic_encoder.one_hot


class NumpyPolicy:
    """``model``'s actions, their log-probs and V(s) (None without a critic), in NumPy.

    Build it through ``pgrad.fast.acting_policy``, which checks that it can run the model."""

    def __init__(self, model: Policy | ActorCritic, rng: np.random.Generator):
        self.rng = rng
        actor = actor_of(model)
        self.actor = actor
        self.noise: np.ndarray | None = None  # gSDE's theta per env, while held
        self.one_hot = actor.encoder.one_hot
        self.body = LinearStack.of(_linears(actor.body), _activations(actor.body))
        self.critic_body = self.value_head = None
        if isinstance(model, ActorCritic):
            self.value_head = LinearStack.of([model.value_head], [])
            if not model.shared:
                body = model.critic_body
                self.critic_body = LinearStack.of(_linears(body), _activations(body))
        self.discrete = isinstance(actor, (CategoricalPolicy, MultiCategoricalPolicy))
        self.mean_clip = getattr(actor, "mean_clip", None)
        if self.discrete:
            heads = [actor.logits]
            self.nvec = getattr(actor, "nvec", None)
        else:
            heads = [actor.mean]
            if actor.std_mode == "parameter":
                self.log_std = ops.array(actor.log_std)
            elif actor.std_mode == "gsde":
                self.gsde_log_std = ops.array(actor.log_std)
                self.noise_age, self.gsde_sample_every = 0, actor.gsde_sample_every
            else:
                heads.append(actor.log_std_head)
            if actor.squash == "tanh":
                self.loc, self.scale = ops.array(actor.loc), ops.array(actor.scale)
        self.heads = [LinearStack.of([head], []) for head in heads]
        self.head_splits = list(np.cumsum([head.out_features for head in heads])[:-1])
        self.side_by_side = (
            _SideBySide(actor, model, heads) if _side_by_side_applies(actor, model) else None
        )

    def refresh(self) -> None:
        """Take up changed parameter values (views see them already; the side-by-side copies
        do not), and (gSDE) draw new exploration matrices at the next action."""
        if self.side_by_side is not None:
            self.side_by_side.refresh()
        self.noise = None

    def __call__(
        self, obs: np.ndarray, deterministic: bool = False
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(actions, log pi(a|s), V(s) or None) for a batch of raw observations."""
        value = features = None
        x = ops.encode(obs, self.one_hot)
        if self.side_by_side is not None:
            outputs = self.side_by_side(x)
            outputs, value = outputs[:, :-1], outputs[:, -1]
            heads = np.split(outputs, self.head_splits, axis=1) if self.head_splits else [outputs]
        else:
            features = self.body(x)
            heads = [head(features) for head in self.heads]
            if self.value_head is not None:
                critic = features if self.critic_body is None else self.critic_body(x)
                value = self.value_head(critic)[:, 0]
        if self.discrete:
            return (*self._discrete(heads[0], deterministic), value)
        if self.mean_clip is not None:
            heads[0] = np.clip(heads[0], -self.mean_clip, self.mean_clip)
        if hasattr(self, "gsde_log_std"):
            return (*self._gsde(features, heads[0], deterministic), value)
        return (*self._gaussian(heads, deterministic), value)

    def value(self, obs: np.ndarray) -> np.ndarray:
        x = ops.encode(obs, self.one_hot)
        if self.side_by_side is not None:
            return self.side_by_side(x)[:, -1]
        features = self.body(x) if self.critic_body is None else self.critic_body(x)
        return self.value_head(features)[:, 0]

    def _gsde(
        self, features: np.ndarray, mean: np.ndarray, deterministic: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """u = mean + theta^T z(s) with this env's theta (u = mean if ``deterministic``), and
        log N(u; mean, v(s)) (``policies.GaussianPolicy``, std="gsde"); squashed, a = loc +
        scale tanh(u) and log pi(a) = log N(u) - log |da/du| (``_squashed``)."""
        noise = None
        if not deterministic:
            n, every = len(features), self.gsde_sample_every
            if gsde_noise_due(self.noise, n, self.noise_age, every):
                self.noise = ops.gsde_noise(self.gsde_log_std, n, self.rng)
                self.noise_age = 0
            self.noise_age += 1
            noise = self.noise
        eps, log_prob = ops.gsde_log_density(features, noise, self.gsde_log_std)
        return self._squashed(mean + eps, log_prob)

    def _discrete(self, logits: np.ndarray, deterministic: bool) -> tuple[np.ndarray, ...]:
        if self.nvec is None:
            return ops.sample_categorical(ops.log_softmax(logits)[0], self.rng, deterministic)
        parts = np.split(logits, np.cumsum(self.nvec)[:-1], axis=-1)
        drawn = [
            ops.sample_categorical(ops.log_softmax(part)[0], self.rng, deterministic)
            for part in parts
        ]
        return np.stack([a for a, _ in drawn], -1), sum(lp for _, lp in drawn)

    def _gaussian(self, heads: list[np.ndarray], deterministic: bool) -> tuple[np.ndarray, ...]:
        """u = mean + std * eps, log N(u; mean, std^2); squashed: a = loc + scale * tanh(u),
        log pi(a) = log N(u) - log |da/du| (``policies.SquashedNormal``)."""
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
        return self._squashed(u, ops.gaussian_log_density(eps, log_std).sum(-1))

    def _squashed(self, u: np.ndarray, log_prob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(u, log N(u)) unsquashed; with tanh, a = loc + scale tanh(u) and log pi(a) =
        log N(u) - log |da/du| summed over actions (``policies.SquashedNormal``)."""
        if self.actor.squash != "tanh":
            return u, log_prob
        log_det = ops.tanh_log_det(u, self.scale).sum(-1)
        return self.loc + self.scale * np.tanh(u), log_prob - log_det
