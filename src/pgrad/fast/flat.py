"""A model's parameters and gradients as views into two flat buffers."""

from __future__ import annotations

import torch
from torch import nn

from pgrad.optim import check_grad_norm, check_loss


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
    The flat vector is also what A3C shares between processes and Ray sends to its workers.
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
        (``fast.backprop``); only clip and check it. A non-finite loss or gradient raises
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
        """``optim.gradient_step`` on the flat buffers; ``optimizer`` must optimize
        ``self.param``."""
        grad_norm = self.gradient(loss, max_grad_norm, parts)
        optimizer.step()
        return grad_norm
