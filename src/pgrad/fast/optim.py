"""The optimizer fast step: ``optimizer.step()`` through torch's functional form."""

from __future__ import annotations

import torch
from torch import nn
from torch.optim import adam, rmsprop
from torch.optim import optimizer as torch_optimizer

from pgrad.optim import make_optimizer


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
