"""The on-policy actor-critic loss and its gradient, with backpropagation written out by hand.

A2C and PPO take thousands of gradient steps on small MLPs (64x64 on a few dozen to a few hundred
samples). On a CPU each step is then ~600 tiny torch ops under autograd (graph recording,
``*Backward`` nodes, ``AccumulateGrad``), and the per-op overhead costs more than the
arithmetic. Written down, the whole gradient is about 75 array ops, so ``ActorCriticBackprop``
computes the loss that ``a2c.a2c_loss`` and ``ppo.ppo_loss`` compute in torch,

    L = L_pi + value_coef * L_V - entropy_coef * mean_t H(pi(.|s_t)),

and dL/dtheta for every parameter directly, in NumPy (an op on a small array costs ~1 us there,
~3 us in torch) on views of the parameters, into the flat gradient buffer that the optimizer
reads (``FlatParameters``). L_pi is ``losses.policy_gradient_loss`` (``surrogate="vanilla"``)
or ``losses.clipped_surrogate_loss`` (``"clipped"``), L_V is ``losses.value_loss`` (optionally
clipped). Tests hold loss and gradient to autograd's on the same model.

Backpropagation through the layers is ``numpy_ops.LinearStack.backward``. Where the losses meet
the network:

    softmax head:  d log pi(a|s) / d logits = onehot(a) - pi,   dH / d logits = -pi (log pi + H)
    Gaussian head: d log pi / d mu = (a - mu) / sigma^2,   d log pi / d log sigma = z^2 - 1,
                   dH / d log sigma = 1,   z = (a - mu) / sigma

and PPO's min/max with their clipped terms pass gradient only through the unclipped term, where it
is the one that counts. The two agree with autograd to float32 rounding (autograd splits exact
ties between two different values evenly: a measure-zero event).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from pgrad.fast import numpy_ops as ops
from pgrad.fast.numpy_ops import LinearStack
from pgrad.policies import LOG_SQRT_2PI, ActorCritic, CategoricalPolicy


@dataclass(frozen=True)
class ActorCriticTerms:
    """What L is made of: L_pi's form, the weights and the clip ranges."""

    surrogate: Literal["vanilla", "clipped"]
    """``vanilla``: -mean_t log pi(a_t|s_t) A_t (A2C); ``clipped``: PPO's clipped surrogate."""
    value_coef: float
    entropy_coef: float
    clip_range: float | None = None
    """The clipped surrogate's epsilon."""
    clip_range_vf: float | None = None
    """Clip V around its old value by this much (None: unclipped)."""


def _stack(body: nn.Module, head: nn.Linear, grads: dict) -> LinearStack:
    linears = [m for m in body if isinstance(m, nn.Linear)] + [head]
    return LinearStack.of(linears, [m for m in body if not isinstance(m, nn.Linear)], grads)


class ActorCriticBackprop:
    """L and dL/dtheta of an actor-critic on a batch, written into its flat gradient buffer.

    Build it through ``pgrad.fast.loss_gradient``, which checks that it can run the model."""

    def __init__(
        self, model: ActorCritic, grads: dict[nn.Parameter, torch.Tensor], terms: ActorCriticTerms
    ):
        actor = model.actor
        self.terms = terms
        self.one_hot = actor.encoder.one_hot
        self.categorical = isinstance(actor, CategoricalPolicy)
        self.actor = _stack(actor.body, actor.logits if self.categorical else actor.mean, grads)
        self.critic = _stack(model.critic_body, model.value_head, grads)
        if not self.categorical:
            self.log_std = ops.array(actor.log_std)
            self.grad_log_std = ops.array(grads[actor.log_std])

    def __call__(
        self,
        obs: torch.Tensor,
        actions: torch.Tensor,
        advantages: torch.Tensor,
        targets: torch.Tensor,
        old_log_probs: torch.Tensor | None = None,
        old_values: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        """(L, its parts, log pi(a_t|s_t)) as tensors, as the torch loss returns them;
        dL/dtheta is left in the buffers. ``advantages`` are used as given (normalise first)."""
        terms, n = self.terms, len(obs)
        x = ops.encode(obs.numpy(), self.one_hot)
        adv = advantages.numpy()
        actor = self.actor.forward(x)
        critic = self.critic.forward(x)
        log_probs, entropy, head_grad = self._head(actor[-1], actions.numpy())
        # d L_pi / d log pi(a_t|s_t)
        if terms.surrogate == "vanilla":
            policy_loss = -float((log_probs * adv).mean())
            d_log_prob = adv / np.float32(-n)
        else:
            policy_loss, d_log_prob = _clipped_surrogate(
                log_probs, old_log_probs.numpy(), adv, terms.clip_range
            )
        value_loss, d_value = _value_loss(
            critic[-1][:, 0],
            targets.numpy(),
            None if old_values is None else old_values.numpy(),
            terms.clip_range_vf,
        )
        g_actor = head_grad(d_log_prob, np.float32(-terms.entropy_coef / n))
        self.actor.backward(actor, g_actor)
        d_value *= np.float32(terms.value_coef)
        self.critic.backward(critic, d_value[:, None])
        total = policy_loss + terms.value_coef * value_loss - terms.entropy_coef * entropy
        values = torch.tensor([total, policy_loss, value_loss, entropy])
        parts = {"policy_loss": values[1], "value_loss": values[2], "entropy": values[3]}
        return values[0], parts, torch.from_numpy(log_probs)

    def _head(self, out: np.ndarray, actions: np.ndarray):
        """(log pi(a_t|s_t), mean_t H_t, a function of (dL/dlog pi_t, dL/dH_t) giving
        dL/d(head output), and for a Gaussian writing dL/dlog sigma)."""
        n = len(out)
        if self.categorical:
            log_pi, exp, total = ops.log_softmax(out)
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
        log_probs = ops.gaussian_log_density(z, log_std).sum(1)
        entropy = float((0.5 + LOG_SQRT_2PI + log_std).sum())

        def grad(d_log_prob: np.ndarray, d_entropy: np.float32) -> np.ndarray:
            d = d_log_prob[:, None]
            self.grad_log_std[:] = (d * (z * z - 1.0)).sum(0) + d_entropy * n
            return d * z * inv_std

        return log_probs, entropy, grad


def _clipped_surrogate(
    log_probs: np.ndarray, old_log_probs: np.ndarray, advantages: np.ndarray, eps: float
) -> tuple[float, np.ndarray]:
    """``losses.clipped_surrogate_loss`` and its derivative in log pi_t: -rho_t A_t / n where the
    unclipped term is the minimum (there the clip is inactive or the two are equal), else 0."""
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
