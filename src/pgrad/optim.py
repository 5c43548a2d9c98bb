"""Optimizers and one gradient step: Adam or RMSprop, a learning-rate schedule, and the checks
that keep a NaN from ever reaching the parameters."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from pgrad.errors import NonFiniteError


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


def set_learning_rate(optimizer: torch.optim.Optimizer, config: Any, steps: int) -> float:
    """lr = learning_rate * (1 - steps / total) with ``config.anneal_lr``, else
    ``learning_rate``; set on every parameter group and returned."""
    lr = config.learning_rate
    if config.anneal_lr:
        lr *= max(0.0, 1.0 - steps / config.steps)
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr


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
    params: nn.Module | list[torch.Tensor],
    optimizer: torch.optim.Optimizer,
    loss: torch.Tensor,
    max_grad_norm: float | None,
    parts: dict[str, torch.Tensor] | None = None,
) -> torch.Tensor:
    """One optimizer step on ``loss``, the global gradient norm of ``params`` (a module's or a
    list) clipped to ``max_grad_norm``; returns the norm before clipping. A non-finite loss or
    gradient raises ``NonFiniteError`` (naming the part of ``parts`` at fault) before any
    parameter changes."""
    check_loss(loss, parts)
    optimizer.zero_grad()
    loss.backward()
    if isinstance(params, nn.Module):
        params = params.parameters()
    grad_norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm or float("inf"), foreach=True)
    check_grad_norm(grad_norm)
    optimizer.step()
    return grad_norm


class OptimizerGroup:
    """Several optimizers (SAC's actor, critics and temperature) saved and restored as one."""

    def __init__(self, optimizers: dict[str, torch.optim.Optimizer]):
        self.optimizers = optimizers

    @property
    def param_groups(self) -> list[dict]:
        return [g for o in self.optimizers.values() for g in o.param_groups]

    def state_dict(self) -> dict:
        return {k: o.state_dict() for k, o in self.optimizers.items()}

    def load_state_dict(self, state: dict) -> None:
        for k, o in self.optimizers.items():
            o.load_state_dict(state[k])
