"""The on-policy actor-critic loss and its gradient, with backpropagation written out by hand.

A2C and PPO take thousands of gradient steps on small MLPs (64x64 on a few dozen to a few hundred
samples). On a CPU each step is then ~600 tiny torch ops under autograd (graph recording,
``*Backward`` nodes, ``AccumulateGrad``), and the per-op overhead costs more than the
arithmetic. Written down, the whole gradient is about 75 array ops, so ``ActorCriticBackprop``
computes

    L = L_pi + value_coef * L_V - entropy_coef * mean_t H(pi(.|s_t))

and dL/dtheta for every parameter directly, in NumPy (an op on a small array costs ~1 us there,
~3 us in torch) on views of the parameters, into the flat gradient buffer that the optimizer
reads (``FlatParameters``). Its matrix products go to NumPy's BLAS, limited to the run's thread
count (``set_threads``). The losses are ``losses.py``'s: L_pi is ``policy_gradient_loss``
(A2C) or ``clipped_surrogate_loss`` (PPO), L_V is ``value_loss`` (optionally clipped). Tests
check every gradient against autograd on the same model.

Backpropagation through a layer h_i = f(z_i), z_i = h_{i-1} W_i^T + b_i, given g_i = dL/dz_i
(one row per sample):

    dL/dW_i = g_i^T h_{i-1},   dL/db_i = sum_t g_i[t],   g_{i-1} = (g_i W_i) * f'(z_{i-1}),

with f' = 1 - h^2 for tanh and [h > 0] for ReLU. Where the losses meet the network:

    softmax head:  d log pi(a|s) / d logits = onehot(a) - pi,   dH / d logits = -pi (log pi + H)
    Gaussian head: d log pi / d mu = (a - mu) / sigma^2,   d log pi / d log sigma = z^2 - 1,
                   dH / d log sigma = 1,   z = (a - mu) / sigma

and PPO's min/max with their clipped terms pass gradient only through the unclipped term, where it
is the one that counts. The two agree with autograd to float32 rounding (autograd splits exact
ties between two different values evenly: a measure-zero event).

Supported: ``ActorCritic`` on the CPU with a separate critic body, ``Box`` or ``Discrete``
observations, MLP bodies with tanh or ReLU, a softmax policy or a Gaussian one with a
state-independent std and no squashing. ``ActorCriticBackprop.of`` returns None for anything
else (autograd then).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from torch import nn

from pgrad.numpy_policy import array, encode
from pgrad.policies import LOG_SQRT_2PI, MLP, ActorCritic, CategoricalPolicy, GaussianPolicy

_ACTIVATIONS = {nn.Tanh: "tanh", nn.ReLU: "relu"}


def set_threads(threads: int) -> None:
    """Run torch's ops and NumPy's BLAS on ``threads`` threads each."""
    torch.set_num_threads(threads)
    threadpool_limits(threads, user_api="blas")


def _ones(n: int, cache: dict[int, np.ndarray] = {}) -> np.ndarray:  # noqa: B006
    if n not in cache:
        cache[n] = np.ones(n, dtype=np.float32)
    return cache[n]


class _Network:
    """An MLP body and a linear head on NumPy views of their parameters and gradient buffers:
    the forward pass keeps what the backward pass needs."""

    def __init__(self, body: MLP, head: nn.Linear, grads: dict[nn.Parameter, torch.Tensor]):
        layers = [[m, None] for m in body if isinstance(m, nn.Linear)] + [[head, None]]
        activations = [_ACTIVATIONS[type(m)] for m in body if not isinstance(m, nn.Linear)]
        for layer, activation in zip(layers, activations, strict=False):
            layer[1] = activation
        self.layers = [
            (array(m.weight), array(m.bias), activation, array(grads[m.weight]),
             array(grads[m.bias]))
            for m, activation in layers
        ]  # fmt: skip

    def forward(self, x: np.ndarray) -> list[np.ndarray]:
        """[x, h_1, ..., h_n, head output]."""
        out = [x]
        for weight, bias, activation, _, _ in self.layers:
            z = out[-1] @ weight.T
            z += bias
            if activation == "tanh":
                np.tanh(z, out=z)
            elif activation == "relu":
                np.maximum(z, 0.0, out=z)
            out.append(z)
        return out

    def backward(self, out: list[np.ndarray], g: np.ndarray) -> None:
        """dL/dW, dL/db of every layer into the gradient buffers, given g = dL/d(head output)."""
        ones = _ones(len(g))
        for i in range(len(self.layers) - 1, -1, -1):
            weight, _, _, grad_weight, grad_bias = self.layers[i]
            h = out[i]
            np.matmul(g.T, h, out=grad_weight)
            np.matmul(ones, g, out=grad_bias)  # sum over samples; as a product ~4x faster
            if i == 0:
                break
            g = g * weight if len(weight) == 1 else g @ weight  # an outer product: no BLAS
            activation = self.layers[i - 1][2]
            if activation == "tanh":
                g *= 1.0 - h * h
            elif activation == "relu":
                g *= h > 0


@dataclass
class Coefficients:
    """What the loss is made of: L_pi's form, the weights and PPO's clip ranges."""

    value_coef: float
    entropy_coef: float
    clip_range: float | None = None
    """PPO's epsilon; None: the plain policy-gradient loss (A2C)."""
    clip_range_vf: float | None = None


class ActorCriticBackprop:
    """L and dL/dtheta of an actor-critic on a batch, written into its flat gradient buffer."""

    def __init__(self, model: ActorCritic, grads: dict[nn.Parameter, torch.Tensor]):
        actor = model.actor
        self.one_hot = actor.encoder.one_hot
        self.categorical = isinstance(actor, CategoricalPolicy)
        head = actor.logits if self.categorical else actor.mean
        self.actor = _Network(actor.body, head, grads)
        self.critic = _Network(model.critic_body, model.value_head, grads)
        if not self.categorical:
            self.log_std, self.grad_log_std = array(actor.log_std), array(grads[actor.log_std])

    @classmethod
    def of(
        cls, model: nn.Module, params: list[nn.Parameter], grads: list[torch.Tensor]
    ) -> ActorCriticBackprop | None:
        """For ``model`` whose trainable ``params`` have gradient buffers ``grads``; None if
        the model is not one this module can differentiate."""
        if not isinstance(model, ActorCritic) or model.shared:
            return None
        actor = model.actor
        if type(actor) is GaussianPolicy:
            if actor.std_mode != "parameter" or actor.squash is not None:
                return None
        elif type(actor) is not CategoricalPolicy:
            return None
        for body in (actor.body, model.critic_body):
            if type(body) is not MLP:
                return None
            if not all(type(m) in (nn.Linear, *_ACTIVATIONS) for m in body):
                return None
        if actor.encoder.one_hot != model.critic_encoder.one_hot:
            return None
        mapping = dict(zip(params, grads, strict=True))
        if set(model.parameters()) != set(mapping):
            return None
        if any(p.device.type != "cpu" or p.dtype != torch.float32 for p in params):
            return None
        return cls(model, mapping)

    def __call__(
        self,
        obs: torch.Tensor,
        actions: torch.Tensor,
        advantages: torch.Tensor,
        targets: torch.Tensor,
        coefs: Coefficients,
        old_log_probs: torch.Tensor | None = None,
        old_values: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        """(L, its parts, log pi(a_t|s_t)) as tensors; dL/dtheta is left in the buffers.

        ``advantages`` and ``targets`` are used as given (normalise before calling);
        ``old_log_probs`` is needed with ``clip_range``, ``old_values`` with ``clip_range_vf``.
        """
        n = len(obs)
        x = encode(obs.numpy(), self.one_hot)
        adv = advantages.numpy()
        actor = self.actor.forward(x)
        critic = self.critic.forward(x)
        log_probs, entropy, head_grad = self._head(actor[-1], actions.numpy())
        # d L_pi / d log pi(a_t|s_t)
        if coefs.clip_range is None:
            policy_loss = -float((log_probs * adv).mean())
            d_log_prob = adv / np.float32(-n)
        else:
            policy_loss, d_log_prob = _clipped_surrogate(
                log_probs, old_log_probs.numpy(), adv, coefs.clip_range
            )
        value_loss, d_value = _value_loss(
            critic[-1][:, 0],
            targets.numpy(),
            None if old_values is None else old_values.numpy(),
            coefs.clip_range_vf,
        )
        g_actor = head_grad(d_log_prob, np.float32(-coefs.entropy_coef / n))
        self.actor.backward(actor, g_actor)
        d_value *= np.float32(coefs.value_coef)
        self.critic.backward(critic, d_value[:, None])
        total = policy_loss + coefs.value_coef * value_loss - coefs.entropy_coef * entropy
        values = torch.tensor([total, policy_loss, value_loss, entropy])
        parts = {"policy_loss": values[1], "value_loss": values[2], "entropy": values[3]}
        return values[0], parts, torch.from_numpy(log_probs)

    def _head(self, out: np.ndarray, actions: np.ndarray):
        """(log pi(a_t|s_t), mean_t H_t, a function of (dL/dlog pi_t, dL/dH_t) giving
        dL/d(head output), and for a Gaussian writing dL/dlog sigma)."""
        n = len(out)
        if self.categorical:
            z = out - out.max(1, keepdims=True)
            exp = np.exp(z)
            total = exp.sum(1, keepdims=True)
            log_pi = z - np.log(total)
            pi = exp / total
            rows, index = np.arange(n), actions.astype(np.int64, copy=False)
            entropy = -(pi * log_pi).sum(1)

            def grad(d_log_prob: np.ndarray, d_entropy: np.float32) -> np.ndarray:
                # d_log_prob (onehot(a) - pi) + d_entropy * (-pi (log pi + H))
                g = log_pi + entropy[:, None]
                g *= -d_entropy
                g -= d_log_prob[:, None]
                g *= pi
                g[rows, index] += d_log_prob
                return g

            return log_pi[rows, index], float(entropy.mean()), grad

        log_std = self.log_std
        inv_std = np.exp(-log_std)
        z = (actions.reshape(out.shape) - out) * inv_std
        log_probs = (-0.5 * z * z - log_std - np.float32(LOG_SQRT_2PI)).sum(1)
        entropy = float((0.5 + LOG_SQRT_2PI + log_std).sum())

        def grad(d_log_prob: np.ndarray, d_entropy: np.float32) -> np.ndarray:
            d = d_log_prob[:, None]
            self.grad_log_std[:] = (d * (z * z - 1.0)).sum(0) + d_entropy * n
            return d * z * inv_std

        return log_probs, entropy, grad


def _clipped_surrogate(
    log_probs: np.ndarray, old_log_probs: np.ndarray, advantages: np.ndarray, eps: float
) -> tuple[float, np.ndarray]:
    """-mean_t min(rho_t A_t, clip(rho_t, 1-eps, 1+eps) A_t) and its derivative in log pi_t:
    -rho_t A_t / n where the unclipped term is the minimum (there the clip is inactive or the two
    are equal), else 0."""
    ratio = np.exp(log_probs - old_log_probs)
    unclipped = ratio * advantages
    clipped = np.clip(ratio, 1.0 - eps, 1.0 + eps) * advantages
    d_log_prob = np.where(unclipped <= clipped, unclipped / np.float32(-len(ratio)), 0.0)
    return -float(np.minimum(unclipped, clipped).mean()), d_log_prob.astype(np.float32)


def _value_loss(
    values: np.ndarray,
    targets: np.ndarray,
    old_values: np.ndarray | None,
    clip_range: float | None,
) -> tuple[float, np.ndarray]:
    """``losses.value_loss`` and its derivative in V(s_t): 2 (V - R) / n, and with clipping
    2 (V_clipped - R) / n where the clipped error is the larger and the clip inactive
    (V_old + (V - V_old) may round away from V), 0 where it is larger and the clip active."""
    error = values - targets
    scale = np.float32(2.0 / len(values))
    if clip_range is None:
        return float((error * error).mean()), error * scale
    delta = values - old_values
    clipped_error = old_values + np.clip(delta, -clip_range, clip_range) - targets
    loss, loss_clipped = error * error, clipped_error * clipped_error
    inside = np.abs(delta) <= clip_range
    d_value = np.where(loss >= loss_clipped, error, clipped_error * inside)
    return float(np.maximum(loss, loss_clipped).mean()), (d_value * scale).astype(np.float32)
