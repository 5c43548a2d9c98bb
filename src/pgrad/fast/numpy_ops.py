"""The NumPy primitives of the fast path: the math of ``policies.py`` on NumPy arrays.

Everything in ``pgrad.fast`` is built from these: a stack of linear layers and activations
(forward, and backward for the hand-written gradient), log-softmax, the Gaussian log-density,
the tanh squash's log-det-Jacobian and gSDE's exploration noise. Each states the equation of
its torch reference in ``policies.py``; the tests hold every one to it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from pgrad import policies

LOG_SQRT_2PI = np.float32(policies.LOG_SQRT_2PI)
LOG_2 = np.float32(math.log(2.0))


def array(p: torch.Tensor) -> np.ndarray:
    """A NumPy view of a CPU tensor's memory (no copy: changes show through both ways)."""
    return p.detach().numpy()


def encode(obs: np.ndarray, one_hot: int) -> np.ndarray:
    """``policies.ObservationEncoder``: a batch of raw observations as flat float32 rows
    (one-hot of width ``one_hot`` for ``Discrete`` observations)."""
    if one_hot:
        return np.eye(one_hot, dtype=np.float32)[obs.astype(np.int64)]
    return obs.reshape(len(obs), -1).astype(np.float32, copy=False)


@dataclass(frozen=True)
class Activation:
    """h = f(z) in place, and f'(z) written in terms of h (what backpropagation keeps)."""

    apply: Callable[[np.ndarray], None]
    derivative: Callable[[np.ndarray], np.ndarray] | None = None


def _elu(z: np.ndarray) -> None:
    z[:] = np.where(z > 0, z, np.expm1(z))


ACTIVATIONS: dict[type[nn.Module], Activation] = {
    nn.Tanh: Activation(lambda z: np.tanh(z, out=z), lambda h: 1.0 - h * h),
    nn.ReLU: Activation(lambda z: np.maximum(z, 0.0, out=z), lambda h: h > 0),
    nn.ELU: Activation(_elu),
}
"""The activations the fast path runs (``derivative`` None: acting only, no hand gradient)."""


def _ones(n: int, cache: dict[int, np.ndarray] = {}) -> np.ndarray:  # noqa: B006
    if n not in cache:
        cache[n] = np.ones(n, dtype=np.float32)
    return cache[n]


class LinearStack:
    """h_i = f_i(h_{i-1} W_i + b_i), i = 1..n (f_n: none for a head), with W_i stored (in, out).

    ``layers``: (W, b, activation or None) per layer; W and b are NumPy views of the model's
    parameters (updates show through) or arrays built from them. ``grads``: the matching views
    of the gradient buffers, for ``backward``.
    """

    def __init__(
        self,
        layers: Sequence[tuple[np.ndarray, np.ndarray, Activation | None]],
        grads: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
    ):
        self.layers = list(layers)
        self.grads = grads
        self.transposed = [weight.T for weight, _, _ in self.layers]  # W_i^T, for backward

    @classmethod
    def of(
        cls,
        linears: Sequence[nn.Linear],
        activations: Sequence[nn.Module],
        grads: dict[nn.Parameter, torch.Tensor] | None = None,
    ) -> LinearStack:
        """Views of ``linears``' parameters, ``activations[i]`` after layer i (none after the
        rest); with ``grads`` (parameter -> gradient buffer), ready for ``backward``."""
        fs = [ACTIVATIONS[type(m)] for m in activations]
        fs += [None] * (len(linears) - len(fs))
        layers = [(array(m.weight).T, array(m.bias), f) for m, f in zip(linears, fs, strict=True)]
        if grads is None:
            return cls(layers)
        return cls(layers, [(array(grads[m.weight]), array(grads[m.bias])) for m in linears])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """h_n (``forward`` without keeping the layers' outputs)."""
        for weight, bias, activation in self.layers:
            x = x @ weight
            x += bias
            if activation is not None:
                activation.apply(x)
        return x

    def forward(self, x: np.ndarray) -> list[np.ndarray]:
        """[x, h_1, ..., h_n]: every layer's output, which ``backward`` needs."""
        out = [x]
        for weight, bias, activation in self.layers:
            z = out[-1] @ weight
            z += bias
            if activation is not None:
                activation.apply(z)
            out.append(z)
        return out

    def backward(self, out: list[np.ndarray], g: np.ndarray) -> None:
        """dL/dW_i = g_i^T h_{i-1} and dL/db_i = sum_t g_i[t] into the gradient buffers, with
        g_n = ``g`` = dL/dh_n and g_{i-1} = (g_i W_i^T) * f'(z_{i-1})."""
        assert self.grads is not None
        ones = _ones(len(g))
        for i in range(len(self.layers) - 1, -1, -1):
            weight = self.transposed[i]
            grad_weight, grad_bias = self.grads[i]
            h = out[i]
            np.matmul(g.T, h, out=grad_weight)
            np.matmul(ones, g, out=grad_bias)  # sum over samples; as a product ~4x faster
            if i == 0:
                break
            g = g * weight if len(weight) == 1 else g @ weight  # an outer product: no BLAS
            g *= self.layers[i - 1][2].derivative(h)


def log_softmax(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """log pi = z - log sum_a exp(z_a), z = logits - max (``policies.Categorical``), with exp(z)
    and its sum (pi = exp(z) / sum, for the gradient)."""
    z = logits - logits.max(-1, keepdims=True)
    exp = np.exp(z)
    total = exp.sum(-1, keepdims=True)
    return z - np.log(total), exp, total


def sample_categorical(
    log_probs: np.ndarray, rng: np.random.Generator, deterministic: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(a, log pi(a)): the first a with u < sum_{b<=a} pi(b), u ~ U[0, 1)
    (``policies.Categorical.sample``), or a = argmax."""
    if deterministic:
        action = log_probs.argmax(-1)
    else:
        cdf = np.exp(log_probs).cumsum(-1)
        u = rng.random((len(cdf), 1), dtype=np.float32)
        action = np.minimum((cdf <= u).sum(-1), cdf.shape[-1] - 1)
    return action, log_probs[np.arange(len(action)), action]


def gaussian_log_density(z: np.ndarray, log_std: np.ndarray) -> np.ndarray:
    """log N(x; mean, std^2) = -z^2 / 2 - log std - log sqrt(2 pi), z = (x - mean) / std,
    elementwise (``policies.normal_log_density``)."""
    return -0.5 * z * z - log_std - LOG_SQRT_2PI


def tanh_log_det(u: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """log |da/du| of a = loc + scale tanh(u): log scale + 2 (log 2 - u - softplus(-2u))
    (``policies.SquashedNormal``)."""
    return 2.0 * (LOG_2 - u - np.logaddexp(np.float32(0.0), -2.0 * u)) + np.log(scale)


def gsde_noise(log_std: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """gSDE's exploration matrices theta ~ N(0, sigma^2) for ``n`` envs, sigma = exp(log_std)
    (``policies.GaussianPolicy.reset_noise``)."""
    sigma = np.exp(log_std)
    return sigma * rng.standard_normal((n, *sigma.shape), dtype=np.float32)


def gsde_log_density(
    features: np.ndarray, noise: np.ndarray | None, log_std: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(eps = theta^T z(s), or 0 without ``noise``; log N(eps; 0, v(s)) summed over actions),
    v_j(s) = sum_i z_i(s)^2 sigma_ij^2 + eps_gSDE (``policies.gsde_variance``)."""
    if noise is None:
        eps = np.zeros((len(features), log_std.shape[1]), np.float32)
    else:
        eps = np.einsum("bi,bij->bj", features, noise)
    variance = np.square(features) @ np.exp(2.0 * log_std) + np.float32(policies.GSDE_EPS)
    log_prob = -0.5 * eps * eps / variance - 0.5 * np.log(variance) - LOG_SQRT_2PI
    return eps, log_prob.sum(-1)
