"""Everything in pgrad that exists only for speed, beside its torch reference.

Small networks on a CPU spend more time in torch's per-op overhead than in arithmetic, so:

- ``acting.NumpyPolicy`` runs the policy in NumPy while collecting experience;
- ``backprop.ActorCriticBackprop`` computes A2C's and PPO's loss and its gradient by hand;
- ``flat.FlatParameters`` keeps parameters and gradients in one buffer each;
- ``optim.optimizer_step`` takes Adam's or RMSprop's step without ``Optimizer.step``'s overhead;
- ``threads.set_threads`` pins torch and BLAS to the run's thread count;

all built on the primitives of ``numpy_ops``. The reference is torch: ``policies.py`` for
acting, each algorithm's own loss (``a2c.a2c_loss``, ``ppo.ppo_loss``) for the gradient, and
``optimizer.step()``. The tests hold every fast twin to its reference.

The off switch is one config key, ``fast`` (default true): ``fast: false`` acts, differentiates
and steps through torch alone, with the same math. Where the fast path cannot run a model
(``unsupported`` says why) it steps aside by itself, and the results are torch's.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import nn

from pgrad.fast.acting import NumpyPolicy
from pgrad.fast.backprop import ActorCriticBackprop, ActorCriticTerms
from pgrad.fast.flat import FlatParameters
from pgrad.fast.numpy_ops import ACTIVATIONS
from pgrad.fast.optim import optimizer_step
from pgrad.fast.threads import set_threads
from pgrad.policies import (
    MLP,
    ActorCritic,
    CategoricalPolicy,
    GaussianPolicy,
    MultiCategoricalPolicy,
    ObservationEncoder,
    Policy,
    actor_of,
)

__all__ = [
    "ActorCriticTerms",
    "FlatParameters",
    "acting_policy",
    "loss_gradient",
    "set_threads",
    "step",
    "unsupported",
]


def unsupported(model: nn.Module, part: Literal["acting", "gradient"]) -> str | None:
    """Why the fast path cannot run ``model`` for ``part`` (None: it can).

    ``acting``: softmax, multi-softmax and Gaussian policies (any std, tanh squash, gSDE) on MLP
    bodies with tanh, ReLU or ELU, with or without a critic, on the CPU. ``gradient``: an
    ``ActorCritic`` with a separate critic body, MLPs with tanh or ReLU, a softmax policy or a
    Gaussian one with a state-independent std and no squashing, float32 on the CPU.
    """
    try:
        actor = actor_of(model)
    except TypeError:
        return f"{type(model).__name__} has no pgrad policy"
    if type(actor) not in (CategoricalPolicy, MultiCategoricalPolicy, GaussianPolicy):
        return f"policy class {type(actor).__name__}"
    runs = model if isinstance(model, ActorCritic) else actor
    if any(p.device.type != "cpu" for p in runs.parameters()):
        return "parameters not on the CPU"
    known = (nn.Linear, MLP, ObservationEncoder, Policy, ActorCritic)
    for m in runs.modules():
        if not isinstance(m, known) and type(m) not in ACTIVATIONS:
            return f"module {type(m).__name__}"
    if part == "acting":
        return None
    if not isinstance(model, ActorCritic) or model.shared:
        return "not an actor-critic with a critic body of its own"
    if isinstance(actor, GaussianPolicy) and (actor.std_mode != "parameter" or actor.squash):
        return "a Gaussian policy with a state-dependent std or squashing"
    if type(actor) is MultiCategoricalPolicy:
        return "a MultiDiscrete policy"
    for body in (actor.body, model.critic_body):
        if any(ACTIVATIONS[type(m)].derivative is None for m in body if type(m) in ACTIVATIONS):
            return "an activation without a hand-written derivative"
    if actor.encoder.one_hot != model.critic_encoder.one_hot:
        return "actor and critic encode observations differently"
    if any(p.dtype != torch.float32 for p in model.parameters()):
        return "parameters not float32"
    return None


def acting_policy(
    model: nn.Module, rng: np.random.Generator, enabled: bool = True
) -> NumpyPolicy | None:
    """``model``'s NumPy twin for collecting experience, or None (act through torch): when
    ``enabled`` is false, or the model is one the fast path cannot run."""
    if not enabled or unsupported(model, "acting") is not None:
        return None
    return NumpyPolicy(model, rng)


def loss_gradient(
    model: nn.Module, flat: FlatParameters, terms: ActorCriticTerms, enabled: bool = True
) -> ActorCriticBackprop | None:
    """The loss ``terms`` of ``model`` with its gradient by hand into ``flat``'s buffer, or None
    (autograd on the algorithm's own loss): when ``enabled`` is false, or the model is one the
    fast path cannot run, or ``flat`` does not hold exactly its parameters."""
    if not enabled or unsupported(model, "gradient") is not None:
        return None
    if set(model.parameters()) != set(flat.params):
        return None
    return ActorCriticBackprop(model, dict(zip(flat.params, flat.grads, strict=True)), terms)


def step(optimizer: torch.optim.Optimizer, enabled: bool = True) -> None:
    """``optimizer.step()``, through ``optim.optimizer_step``'s fast step when ``enabled``."""
    if enabled:
        optimizer_step(optimizer)
    else:
        optimizer.step()
