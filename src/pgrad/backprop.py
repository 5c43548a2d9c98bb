"""The on-policy actor-critic loss and its gradient, with backpropagation written out by hand.

A2C and PPO take thousands of gradient steps on small MLPs (64x64 on a few hundred samples). On
a CPU each step is then ~600 tiny torch ops under autograd (graph recording, ``*Backward``
nodes, ``AccumulateGrad``, the optimizer's bookkeeping), and the dispatch overhead costs more
than the arithmetic. For the common models the whole gradient is a few dozen ops when written
down, so ``ActorCriticBackprop`` computes

    L = L_pi + value_coef * L_V - entropy_coef * mean_t H(pi(.|s_t))

and dL/dtheta for every parameter directly, into the flat gradient buffer that the optimizer
reads (``FlatParameters``). The losses are ``losses.py``'s: L_pi is ``policy_gradient_loss``
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

Supported: ``ActorCritic`` with a separate critic body, ``Box`` or ``Discrete`` observations,
MLP bodies with tanh or ReLU, a softmax policy or a Gaussian one with a state-independent std and
no squashing. ``ActorCriticBackprop.of`` returns None for anything else (autograd then).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from pgrad.policies import (
    LOG_SQRT_2PI,
    MLP,
    ActorCritic,
    CategoricalPolicy,
    GaussianPolicy,
)

_ONE, _MINUS_ONE = torch.tensor(1.0), torch.tensor(-1.0)


def tanh_of_half(z2: torch.Tensor) -> torch.Tensor:
    """tanh(z2 / 2) = 2 sigmoid(z2) - 1.

    The same function as ``torch.tanh`` (to float32 rounding), but torch's tanh kernel ran ~5x
    slower than its sigmoid on this project's CPUs (43 vs 8 us on a 256x64 batch, torch 2.13
    AVX-512 build); the layer computes z2 = 2 z directly (``addmm``'s alpha and beta)."""
    return torch.add(_MINUS_ONE, torch.sigmoid(z2), alpha=2.0)


_ACTIVATIONS = {nn.Tanh: "tanh", nn.ReLU: "relu"}


class _Network:
    """An MLP body and a linear head: the forward pass keeps what the backward pass needs."""

    def __init__(self, body: MLP, head: nn.Linear):
        self.layers: list[tuple[nn.Linear, str | None]] = [
            (linear, _ACTIVATIONS[type(act)] if act is not None else None)
            for linear, act in _plan(body)
        ] + [(head, None)]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """[x, h_1, ..., h_n, head output]."""
        out = [x]
        for linear, activation in self.layers:
            if activation == "tanh":
                z2 = torch.addmm(linear.bias, out[-1], linear.weight.t(), beta=2.0, alpha=2.0)
                out.append(tanh_of_half(z2))
            else:
                z = torch.addmm(linear.bias, out[-1], linear.weight.t())
                out.append(z.clamp_(min=0.0) if activation == "relu" else z)
        return out

    def backward(
        self, out: list[torch.Tensor], g: torch.Tensor, grads: dict[nn.Parameter, torch.Tensor]
    ) -> None:
        """dL/dW, dL/db of every layer into ``grads``, given g = dL/d(head output)."""
        for i in range(len(self.layers) - 1, -1, -1):
            weight = self.layers[i][0].weight
            h = out[i]
            if weight.shape[1] < weight.shape[0]:  # few inputs: this order is ~3x faster
                grads[weight].copy_(torch.mm(h.t(), g).t())
            else:
                torch.mm(g.t(), h, out=grads[weight])
            torch.sum(g, 0, out=grads[self.layers[i][0].bias])
            if i == 0:
                break
            g = g.mm(weight)
            activation = self.layers[i - 1][1]
            if activation == "tanh":
                g = g.mul_(torch.addcmul(_ONE, h, h, value=-1.0))
            elif activation == "relu":
                g = g.masked_fill_(h <= 0, 0.0)


def _plan(body: MLP) -> list[tuple[nn.Linear, nn.Module | None]]:
    plan: list[tuple[nn.Linear, nn.Module | None]] = []
    for layer in body:
        if isinstance(layer, nn.Linear):
            plan.append((layer, None))
        else:
            plan[-1] = (plan[-1][0], layer)
    return plan


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
        self.actor_encoder, self.critic_encoder = actor.encoder, model.critic_encoder
        self.categorical = isinstance(actor, CategoricalPolicy)
        head = actor.logits if self.categorical else actor.mean
        self.actor = _Network(actor.body, head)
        self.critic = _Network(model.critic_body, model.value_head)
        self.log_std = None if self.categorical else actor.log_std
        self.grads = grads

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
        mapping = dict(zip(params, grads, strict=True))
        covered = set(model.parameters())
        if covered != set(mapping) or any(not p.is_contiguous() for p in params):
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
        """(L, its parts, log pi(a_t|s_t)), all detached; dL/dtheta is left in the buffers.

        ``advantages`` and ``targets`` are used as given (normalise before calling);
        ``old_log_probs`` is needed with ``clip_range``, ``old_values`` with ``clip_range_vf``.
        """
        with torch.no_grad():
            n = len(obs)
            actor = self.actor.forward(self.actor_encoder(obs))
            critic = self.critic.forward(self.critic_encoder(obs))
            log_probs, entropy, head_grad = self._head(actor[-1], actions)
            # d L_pi / d log pi(a_t|s_t)
            if coefs.clip_range is None:
                policy_loss = -(log_probs * advantages).mean()
                d_log_prob = advantages / -n
            else:
                policy_loss, d_log_prob = _clipped_surrogate(
                    log_probs, old_log_probs, advantages, coefs.clip_range
                )
            values = critic[-1].squeeze(1)
            value_loss, d_value = _value_loss(values, targets, old_values, coefs.clip_range_vf)
            entropy_mean = entropy.mean()
            g_actor, d_log_std = head_grad(d_log_prob, -coefs.entropy_coef / n)
            self.actor.backward(actor, g_actor, self.grads)
            self.critic.backward(critic, d_value.mul_(coefs.value_coef).unsqueeze(1), self.grads)
            if self.log_std is not None:
                self.grads[self.log_std].copy_(d_log_std)
            total = policy_loss + coefs.value_coef * value_loss - coefs.entropy_coef * entropy_mean
            parts = {"policy_loss": policy_loss, "value_loss": value_loss, "entropy": entropy_mean}
            return total, parts, log_probs

    def _head(self, out: torch.Tensor, actions: torch.Tensor):
        """(log pi(a_t|s_t), H_t, a function of (dL/dlog pi_t, dL/dH_t) giving dL/d(head output)
        and dL/dlog sigma)."""
        if self.categorical:
            log_pi = out.log_softmax(1)
            pi = log_pi.exp()
            index = actions.long().unsqueeze(1)
            log_probs = log_pi.gather(1, index).squeeze(1)
            entropy = -(pi * log_pi).sum(1)

            def grad(d_log_prob: torch.Tensor, d_entropy: float):
                # d_log_prob (onehot(a) - pi) + d_entropy * (-pi (log pi + H))
                g = (log_pi + entropy.unsqueeze(1)).mul_(-d_entropy)
                g.sub_(d_log_prob.unsqueeze(1)).mul_(pi)
                return g.scatter_add_(1, index, d_log_prob.unsqueeze(1)), None

            return log_probs, entropy, grad

        log_std = self.log_std
        inv_std = torch.exp(-log_std)
        z = (actions.reshape(out.shape) - out).mul_(inv_std)
        log_probs = (-0.5 * z.square() - log_std - LOG_SQRT_2PI).sum(1)
        entropy = (0.5 + LOG_SQRT_2PI + log_std).sum().expand(len(out))

        def grad(d_log_prob: torch.Tensor, d_entropy: float):
            d = d_log_prob.unsqueeze(1)
            d_log_std = (d * (z.square() - 1.0)).sum(0) + d_entropy * len(out)
            return (d * z).mul_(inv_std), d_log_std

        return log_probs, entropy, grad


def _clipped_surrogate(
    log_probs: torch.Tensor, old_log_probs: torch.Tensor, advantages: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """-mean_t min(rho_t A_t, clip(rho_t, 1-eps, 1+eps) A_t) and its derivative in log pi_t:
    -rho_t A_t / n where the unclipped term is the minimum (there the clip is inactive or the two
    are equal), else 0."""
    ratio = torch.exp(log_probs - old_log_probs)
    unclipped = ratio * advantages
    clipped = ratio.clamp(1.0 - eps, 1.0 + eps) * advantages
    d_log_prob = (unclipped <= clipped).float().mul_(unclipped).div_(-len(ratio))
    return -torch.minimum(unclipped, clipped).mean(), d_log_prob


def _value_loss(
    values: torch.Tensor,
    targets: torch.Tensor,
    old_values: torch.Tensor | None,
    clip_range: float | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``losses.value_loss`` and its derivative in V(s_t): 2 (V - R) / n, and with clipping
    2 (V_clipped - R) / n where the clipped error is the larger and the clip inactive
    (V_old + (V - V_old) may round away from V), 0 where it is larger and the clip active."""
    error = values - targets
    n = len(values)
    if clip_range is None:
        return error.square().mean(), error.mul(2.0 / n)
    delta = values - old_values
    clipped_error = old_values + delta.clamp(-clip_range, clip_range) - targets
    loss, loss_clipped = error.square(), clipped_error.square()
    plain = loss >= loss_clipped
    inside = delta.abs() <= clip_range
    d_value = torch.where(plain, error, clipped_error * inside).mul_(2.0 / n)
    return torch.maximum(loss, loss_clipped).mean(), d_value
