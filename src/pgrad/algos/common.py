"""What the algorithms share: the policy settings, building the model, one gradient step."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Literal

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.optim import adam, rmsprop
from torch.optim import optimizer as torch_optimizer

from pgrad.backprop import ActorCriticBackprop, Coefficients
from pgrad.config import Config, ConfigError
from pgrad.envs import spaces, vec_env_id
from pgrad.errors import NonFiniteError
from pgrad.losses import clipped_surrogate_loss, entropy_bonus, policy_gradient_loss, value_loss
from pgrad.policies import ActorCritic, Policy, make_policy
from pgrad.rollout import Batch, Rollout

if TYPE_CHECKING:
    from pgrad.distributed.ray_backend import RayRollout


@dataclass
class PolicyConfig(Config):
    """Settings of the policy network (and of the critic, for algorithms that have one)."""

    value_coef: float = 0.5
    """Weight of the critic's regression loss."""
    shared: bool = False
    """Critic on the policy's own body instead of a body of its own."""
    std: Literal["parameter", "state", "gsde"] = "parameter"
    """Gaussian policies: state-independent or state-dependent standard deviation, or
    generalized state-dependent exploration (see ``policies.GaussianPolicy``)."""
    gsde_sample_every: int = 0
    """gSDE: draw new exploration matrices every this many env steps (0: at each rollout's
    start)."""
    squash: Literal["tanh"] | None = None
    """Gaussian policies: squash actions into the Box bounds with tanh."""
    log_std_init: float = 0.0
    ortho_init: bool = True
    """Orthogonal init (gain sqrt 2 hidden, 0.01 policy head); False: PyTorch's default."""

    def check(self) -> None:
        super().check()
        if self.value_coef < 0:
            raise ConfigError(f"value_coef must be >= 0, got {self.value_coef}")
        if self.gsde_sample_every < 0:
            raise ConfigError(f"gsde_sample_every must be >= 0, got {self.gsde_sample_every}")
        if self.std == "gsde" and self.squash is not None:
            raise ConfigError("std: gsde is implemented without squashing; set squash: null")


def build_model(
    config: PolicyConfig, observation_space: gym.Space, action_space: gym.Space, critic: bool
) -> Policy | ActorCritic:
    """The policy for ``action_space``, with a critic V(s) if ``critic``."""
    body = {
        "hidden_sizes": config.hidden_sizes,
        "activation": config.activation,
        "ortho_init": config.ortho_init,
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
    return ActorCritic(policy, observation_space, shared=config.shared, **body)


def check_loss(loss: torch.Tensor, parts: dict[str, torch.Tensor] | None = None) -> None:
    """Raise ``NonFiniteError`` naming the first non-finite part of ``loss`` (or ``loss``)."""
    if bool(torch.isfinite(loss)):
        return
    bad = [k for k, v in (parts or {}).items() if not bool(torch.isfinite(v).all())]
    raise NonFiniteError(f"non-finite {bad[0] if bad else 'loss'} ({float(loss.detach())})")


def check_grad_norm(grad_norm: torch.Tensor) -> None:
    if not bool(torch.isfinite(grad_norm)):
        raise NonFiniteError(f"non-finite gradient (global norm {float(grad_norm)})")


def gradient_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss: torch.Tensor,
    max_grad_norm: float | None,
    parts: dict[str, torch.Tensor] | None = None,
) -> torch.Tensor:
    """One optimizer step on ``loss``, the global gradient norm clipped to ``max_grad_norm``;
    returns the norm before clipping. A non-finite loss or gradient raises ``NonFiniteError``
    (naming the part of ``parts`` at fault) before any parameter changes."""
    check_loss(loss, parts)
    optimizer.zero_grad()
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(
        model.parameters(), max_grad_norm or float("inf"), foreach=True
    )
    check_grad_norm(grad_norm)
    optimizer.step()
    return grad_norm


def views(flat: torch.Tensor, like: list[torch.Tensor]) -> list[torch.Tensor]:
    """Consecutive pieces of ``flat``, each shaped like the tensor of ``like`` at its place."""
    out, offset = [], 0
    for t in like:
        out.append(flat[offset : offset + t.numel()].view_as(t))
        offset += t.numel()
    return out


def flatten(params: list[torch.Tensor]) -> torch.Tensor:
    """One buffer holding ``params``' values, which become views into it (``p.data``)."""
    with torch.no_grad():
        flat = torch.cat([p.detach().reshape(-1) for p in params])
    for p, view in zip(params, views(flat, params), strict=True):
        p.data = view
    return flat


class FlatParameters:
    """A model's parameters and their gradients as views into two flat buffers.

    The optimizer then sees one tensor, so its step, the global gradient-norm clip and zeroing
    the gradients cost one op each instead of one per parameter tensor; the math is unchanged.
    Backward accumulates into the existing ``.grad`` views in place; ``zero_grad`` zeroes the
    buffer and re-attaches any view that something replaced (``model.zero_grad()`` sets them to
    None), so gradients can never silently miss the optimizer.
    """

    def __init__(self, model: nn.Module):
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.param = nn.Parameter(flatten(self.params))
        self.param.grad = torch.zeros_like(self.param)
        self.grads = views(self.param.grad, self.params)
        self.zero_grad()

    def zero_grad(self) -> None:
        self.param.grad.zero_()
        for p, g in zip(self.params, self.grads, strict=True):
            if p.grad is not g:
                p.grad = g

    def clip_grad_norm(self, max_norm: float | None) -> torch.Tensor:
        """Scale the gradient by min(1, max_norm / (||g||_2 + 1e-6)), as
        ``torch.nn.utils.clip_grad_norm_`` does; returns ||g||_2 before clipping."""
        norm = torch.linalg.vector_norm(self.param.grad)
        if max_norm is not None:
            self.param.grad.mul_((max_norm / (norm + 1e-6)).clamp(max=1.0))
        return norm

    def gradient(
        self,
        loss: torch.Tensor,
        max_grad_norm: float | None,
        parts: dict[str, torch.Tensor] | None = None,
        computed: bool = False,
    ) -> torch.Tensor:
        """The clipped gradient of ``loss`` into ``self.param.grad``; the norm before clipping.
        ``computed``: the gradient is in the buffer already, computed by hand alongside ``loss``
        (``pgrad.backprop``); only clip and check it. A non-finite loss or gradient raises
        ``NonFiniteError`` (naming the part at fault)."""
        if computed:
            grad_norm = self.clip_grad_norm(max_grad_norm)
            if not bool(torch.isfinite(loss + grad_norm)):  # one host sync for both checks
                check_loss(loss, parts)
                check_grad_norm(grad_norm)
            return grad_norm
        check_loss(loss, parts)
        self.zero_grad()
        loss.backward()
        grad_norm = self.clip_grad_norm(max_grad_norm)
        check_grad_norm(grad_norm)
        return grad_norm

    def gradient_step(
        self,
        optimizer: torch.optim.Optimizer,
        loss: torch.Tensor,
        max_grad_norm: float | None,
        parts: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """``gradient_step`` on the flat buffers; ``optimizer`` must optimize ``self.param``."""
        grad_norm = self.gradient(loss, max_grad_norm, parts)
        optimizer.step()
        return grad_norm


@dataclass
class OnPolicyConfig(PolicyConfig):
    """Fixed-length rollouts from ``n_envs`` envs, a critic, and Adam or RMSprop (A2C, PPO)."""

    n_steps: int = 5
    """Steps per env per rollout (rollout size = n_steps * n_envs)."""
    gae_lambda: float = 1.0
    optimizer: Literal["adam", "rmsprop"] = "adam"
    """``rmsprop`` is Stable-Baselines3's A2C default (alpha 0.99)."""
    adam_eps: float = 1e-5
    """epsilon of the optimizer (Adam's, or RMSprop's)."""
    anneal_lr: bool = False
    """Decay the learning rate linearly to 0 over ``steps``."""
    backend: Literal["local", "ray"] = "local"
    """``ray``: collect with ``workers`` Ray actors (A2C/PPO: synchronous rounds; A3C:
    asynchronous gradients); see ``pgrad.distributed``."""
    workers: int = 1
    """Rollout workers (Ray actors, or A3C's processes), each with ``n_envs`` envs."""
    ray_address: str | None = None
    """Ray cluster to join (``ray start --head`` prints it); None starts a local Ray instance."""
    analytic_gradients: bool = True
    """Compute the loss gradient by the hand-written backpropagation of ``pgrad.backprop`` where
    the model allows it (same math as autograd, ~2x fewer microseconds per step on small MLPs);
    false: always autograd."""

    def check(self) -> None:
        super().check()
        if self.workers < 1:
            raise ConfigError(f"workers must be >= 1, got {self.workers}")
        if self.backend == "ray" and (self.normalize_obs or self.normalize_reward):
            raise ConfigError(
                "backend ray does not support normalize_obs/normalize_reward (each worker would "
                "keep its own statistics); set them to false"
            )
        if self.n_steps < 1:
            raise ConfigError(f"n_steps must be >= 1, got {self.n_steps}")
        if not 0.0 <= self.gae_lambda <= 1.0:
            raise ConfigError(f"gae_lambda must be in [0, 1], got {self.gae_lambda}")
        if not self.adam_eps > 0:
            raise ConfigError(f"adam_eps must be > 0, got {self.adam_eps}")


def make_optimizer(
    name: str, params: Iterable[torch.nn.Parameter], lr: float, eps: float, fused: bool = True
) -> torch.optim.Optimizer:
    """Adam, or RMSprop with alpha 0.99 (Stable-Baselines3's A2C optimizer).

    Adam runs its fused kernel (unless ``fused=False``) and RMSprop its multi-tensor one: the
    same update rule as the per-parameter loop, in one or a few ops instead of several per
    parameter.
    """
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, alpha=0.99, eps=eps, foreach=True)
    return torch.optim.Adam(params, lr=lr, eps=eps, fused=fused or None)


def optimizer_step(optimizer: torch.optim.Optimizer) -> None:
    """``optimizer.step()``. For ``make_optimizer``'s fused Adam or RMSprop on one flat tensor,
    the same update through the optimizer's functional form (``torch.optim.adam.adam``;
    ``torch.optim.rmsprop.rmsprop``'s single-tensor form, the same ops as its multi-tensor one):
    ``Optimizer.step``'s per-call machinery (hook lists, profiler scope, state lookups) cost ~40
    of Adam's ~75 us per step here (RMSprop: 70 -> 31 us), more than the update itself.
    Anything else (another optimizer or option, registered hooks, the first step, which creates
    the state) takes ``optimizer.step()``, and so does every step on a torch whose internals
    differ from the ones this relies on (``_fast_step_agrees``)."""
    step = _FAST_STEPS.get(type(optimizer))
    if step is not None and _fast_step_agrees(type(optimizer)) and _plain(optimizer, step):
        group = optimizer.param_groups[0]
        step(group, optimizer.state[group["params"][0]])
    else:
        optimizer.step()


def _adam(group: dict, state: dict) -> None:
    param = group["params"][0]
    beta1, beta2 = group["betas"]
    adam.adam(
        [param], [param.grad], [state["exp_avg"]], [state["exp_avg_sq"]], [],
        [state["step"]], fused=True, amsgrad=False, beta1=beta1, beta2=beta2,
        lr=group["lr"], weight_decay=0.0, eps=group["eps"], maximize=False,
    )  # fmt: skip


def _rmsprop(group: dict, state: dict) -> None:
    param = group["params"][0]
    with torch.no_grad():  # as Optimizer.step: an in-place update of a leaf
        rmsprop.rmsprop(
            [param], [param.grad], [state["square_avg"]], [], [], [state["step"]],
            foreach=False, lr=group["lr"], alpha=group["alpha"],
            eps=group["eps"], weight_decay=0.0, momentum=0.0, centered=False,
        )  # fmt: skip


_FAST_STEPS = {torch.optim.Adam: _adam, torch.optim.RMSprop: _rmsprop}


def _plain(optimizer: torch.optim.Optimizer, step) -> bool:
    """Whether ``step`` does exactly what ``optimizer.step()`` would here: one group of one
    tensor whose state exists, no hooks, no option the functional call leaves out. Reads torch's
    internals directly; ``_fast_step_agrees`` has checked this torch has them."""
    group = optimizer.param_groups[0]
    state = optimizer.state.get(group["params"][0]) if len(group["params"]) == 1 else None
    hooked = (
        optimizer._optimizer_step_pre_hooks
        or optimizer._optimizer_step_post_hooks
        or torch_optimizer._global_optimizer_pre_hooks
        or torch_optimizer._global_optimizer_post_hooks
    )
    if not state or hooked or len(optimizer.param_groups) != 1:
        return False
    if group["maximize"] or group["weight_decay"] or group["differentiable"] or group["capturable"]:
        return False
    if step is _adam:
        return group["fused"] and not (group["amsgrad"] or group["decoupled_weight_decay"])
    return not (group["centered"] or group["momentum"])


_AGREES: dict[type, bool] = {}


def _fast_step_agrees(kind: type) -> bool:
    """Whether the functional step gives ``optimizer.step()``'s parameters bit for bit on this
    torch (checked once per process on a small problem; a changed signature or rule, a missing
    function or hook list, means no)."""
    if kind not in _AGREES:
        name, step = ("adam" if kind is torch.optim.Adam else "rmsprop"), _FAST_STEPS[kind]
        params = [nn.Parameter(torch.linspace(-1.0, 1.0, 7)) for _ in range(2)]
        optimizers = [make_optimizer(name, [p], lr=0.01, eps=1e-5) for p in params]
        try:
            for i in range(3):
                for p, opt in zip(params, optimizers, strict=True):
                    p.grad = torch.cos(p.detach() * (i + 1))
                    if opt is optimizers[1] and _plain(opt, step):
                        step(opt.param_groups[0], opt.state[p])
                    else:
                        opt.step()
            _AGREES[kind] = torch.equal(params[0], params[1])
        except Exception:
            _AGREES[kind] = False
    return _AGREES[kind]


def set_learning_rate(
    optimizer: torch.optim.Optimizer, config: OnPolicyConfig, steps: int
) -> float:
    """lr = learning_rate * (1 - steps / total) with ``anneal_lr``, else ``learning_rate``."""
    lr = config.learning_rate
    if config.anneal_lr:
        lr *= max(0.0, 1.0 - steps / config.steps)
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr


def episode_metrics(batch: Batch) -> dict[str, float]:
    """Episodes that ended in ``batch``: their count, mean true return and mean length."""
    return episode_stats(batch.episode_returns, batch.episode_lengths)


def episode_stats(returns: Sequence[float], lengths: Sequence[int]) -> dict[str, float]:
    """The count, mean return and mean length of some finished episodes (NaN means if none)."""
    n = len(returns)
    return {
        "episodes": n,
        "episode_return": float(np.mean(returns)) if n else float("nan"),
        "episode_length": float(np.mean(lengths)) if n else float("nan"),
    }


def build_actor_critic(
    config: OnPolicyConfig, observation_space: gym.Space, action_space: gym.Space
) -> ActorCritic:
    return build_model(config, observation_space, action_space, critic=True)


def actor_critic_loss(
    model: ActorCritic,
    obs: torch.Tensor,
    actions: torch.Tensor,
    advantages: torch.Tensor,
    targets: torch.Tensor,
    coefs: Coefficients,
    old_log_probs: torch.Tensor | None = None,
    old_values: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
    """(L, its parts, log pi(a_t|s_t) detached) by autograd, with

        L = L_pi + value_coef * value_loss - entropy_coef * mean_t H(pi(.|s_t)),

    L_pi = ``policy_gradient_loss``, or ``clipped_surrogate_loss`` with ``coefs.clip_range``."""
    dist, values = model(obs)
    log_probs = dist.log_prob(actions)
    if coefs.clip_range is None:
        policy_loss = policy_gradient_loss(log_probs, advantages)
    else:
        policy_loss = clipped_surrogate_loss(log_probs, old_log_probs, advantages, coefs.clip_range)
    parts = {
        "policy_loss": policy_loss,
        "value_loss": value_loss(values, targets, old_values, coefs.clip_range_vf),
        "entropy": entropy_bonus(dist.entropy()),
    }
    total = (
        policy_loss + coefs.value_coef * parts["value_loss"] - coefs.entropy_coef * parts["entropy"]
    )
    return total, parts, log_probs.detach()


class OnPolicy:
    """What A2C and PPO set up alike: an actor-critic, its optimizer, a fixed-length rollout."""

    def __init__(self, config: OnPolicyConfig, envs: gym.vector.VectorEnv, seed: int | None = None):
        self.config = config
        self.model = build_actor_critic(config, *spaces(envs))
        lr, eps = config.learning_rate, config.adam_eps
        self.flat = FlatParameters(self.model)
        self.optimizer = make_optimizer(config.optimizer, [self.flat.param], lr, eps)
        self.backprop = None
        if config.analytic_gradients:
            self.backprop = ActorCriticBackprop.of(self.model, self.flat.params, self.flat.grads)
        # (L, its parts, log pi) of a minibatch: ``actor_critic_loss``, or the hand-written one,
        # which leaves its gradient in the buffer (then L is detached); see minibatch_gradient.
        self.minibatch_loss = self.backprop or partial(actor_critic_loss, self.model)
        self.rollout: Rollout | RayRollout
        if config.backend == "ray":
            from pgrad.distributed.ray_backend import RayRollout

            self.rollout = RayRollout(config, vec_env_id(envs), seed)
        else:
            if config.workers > 1:
                raise ConfigError(
                    f"workers: {config.workers} needs backend: ray (a local {type(self).__name__}"
                    " collects in one process; use n_envs for more envs)"
                )
            self.rollout = Rollout(envs, config.n_steps, seed)
        self.steps = 0

    def iterate(self) -> dict[str, float]:
        metrics = self.update(self.rollout.collect(self.model))
        return {**metrics, **self.rollout.metrics()}

    def update(self, batch: Batch) -> dict[str, float]:
        raise NotImplementedError

    def minibatch_gradient(
        self, total: torch.Tensor, parts: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        """The clipped gradient of ``minibatch_loss``'s L in the flat buffer; its norm before
        clipping. A non-finite loss or gradient raises ``NonFiniteError``."""
        computed = self.backprop is not None
        return self.flat.gradient(total, self.config.max_grad_norm, parts, computed)

    def close(self) -> None:
        self.rollout.close()

    def state(self) -> dict:
        """What ``resume`` needs beyond the model and optimizer."""
        return {"steps": self.steps, "rollout": self.rollout.state()}

    def load_state(self, state: dict, envs: gym.vector.VectorEnv, env_restored: bool) -> None:
        """Continue in ``envs``: the saved env (``env_restored``) picks up the saved episodes;
        a fresh one starts new episodes."""
        self.steps = state["steps"]
        self.rollout.load_state(state["rollout"], envs, env_restored)
