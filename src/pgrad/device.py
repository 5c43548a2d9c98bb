"""Where a run's tensors live: the config key ``device`` (``--device auto|cpu|cuda|cuda:N``).

``auto`` is the rule below, chosen per part of the run:

- a small MLP policy learns on the CPU: acting is one tiny forward pass per env step, where a
  GPU's launch and transfer latency (tens of microseconds per op) costs more than the
  arithmetic, and pgrad's CPU fast path (``pgrad.fast``) already runs it at NumPy speed;
  Stable-Baselines3 recommends the CPU for MLP policies for the same reason;
- a language model (RLHF) runs on the GPU where there is one, and so does a CNN policy
  (``pgrad.encoders``): convolutions over every env's stacked frames are real arithmetic.

An explicit ``cuda`` puts the learner (network, optimizer, minibatches) there. On-policy
algorithms with an MLP policy still act on a CPU copy of it (``ActingCopy``), refreshed once per
rollout: one weight transfer per rollout instead of two per env step; a CNN policy acts on the
GPU, one batched forward pass over all envs per step. SAC keeps its networks and its
replay buffer on the device and acts there, as Stable-Baselines3 does. Checkpoints are always
read onto the CPU first (``runs.load_checkpoint``), so a run trained on a GPU loads and
evaluates on a machine without one.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from typing import Literal, TypeVar

import torch
from torch import nn

from pgrad.errors import PgradError

T = TypeVar("T")
NAMES = re.compile(r"auto|cpu|cuda(:\d+)?")
CPU = torch.device("cpu")


def check(name: str) -> None:
    """Raise ``PgradError`` unless ``name`` is a device pgrad knows how to ask for."""
    if not isinstance(name, str) or not NAMES.fullmatch(name):
        raise PgradError(f"device must be auto, cpu, cuda or cuda:N, got {name!r}")


def resolve(name: str, auto: Literal["cpu", "accelerator"] = "cpu") -> torch.device:
    """The ``torch.device`` for ``name``; ``auto`` gives the CPU, or with ``auto="accelerator"``
    the first CUDA device where one exists. Asking for a CUDA device this machine lacks is a
    one-line error."""
    check(name)
    if name == "auto":
        return torch.device("cuda") if auto == "accelerator" and cuda_count() > 0 else CPU
    if name == "cpu":
        return CPU
    count = cuda_count()
    if count == 0:
        raise PgradError(f"device {name}: this machine has no CUDA device; use --device cpu")
    index = int(name.partition(":")[2] or 0)
    if index >= count:
        raise PgradError(f"device {name}: this machine has CUDA devices 0 to {count - 1} only")
    return torch.device("cuda", index)


def preferred(model: nn.Module) -> Literal["cpu", "accelerator"]:
    """What ``auto`` means for ``model``: the accelerator for a convolutional network, the CPU
    for an MLP (module docstring)."""
    convolutional = any(isinstance(m, nn.Conv2d) for m in model.modules())
    return "accelerator" if convolutional else "cpu"


def cuda_count() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def of(module: nn.Module) -> torch.device:
    """The device of ``module``'s first parameter (the CPU for a module without any)."""
    return next((p.device for p in module.parameters()), CPU)


def moved(record: T, where: torch.device) -> T:
    """A copy of the dataclass ``record`` with its tensor fields on ``where``."""
    tensors = {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}
    return dataclasses.replace(
        record, **{k: v.to(where) for k, v in tensors.items() if isinstance(v, torch.Tensor)}
    )


def bf16_autocast(device: torch.device, enabled: bool = True):
    """bf16 autocast on a CUDA device that supports it, else a context that changes nothing."""
    on = enabled and device.type == "cuda" and torch.cuda.is_bf16_supported()
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=on)


class ActingCopy:
    """The policy to act with: ``model`` itself, or, for a learner off the CPU whose policy the
    CPU acts faster (``on_cpu``: an MLP on the fast path), a CPU copy of it whose weights
    ``__call__`` refreshes from the learner's (in place, so the fast path keeps its views). A
    CNN policy acts where it learns, batched over the envs."""

    def __init__(self, model: nn.Module, on_cpu: bool = True, always: bool = False):
        self.model = model
        elsewhere = always or of(model) != CPU
        self.copy = copy.deepcopy(model).to(CPU) if on_cpu and elsewhere else None

    def __call__(self) -> nn.Module:
        if self.copy is None:
            return self.model
        with torch.no_grad():
            source = self.model.state_dict()
            for name, tensor in self.copy.state_dict().items():
                tensor.copy_(source[name])
        return self.copy


def forked_rng(on: torch.device):
    """``torch.random.fork_rng`` over the CPU generator and, for a model on a GPU, that GPU's:
    what runs inside (an evaluation) leaves the training's random streams as they were."""
    return torch.random.fork_rng(devices=[on] if on.type == "cuda" else [])


def rng_state(on: torch.device) -> dict[str, torch.Tensor]:
    """The generators a run on ``on`` samples from: the CPU's, and the GPU's when on one."""
    state = {"torch": torch.get_rng_state()}
    if on.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(on)
    return state


def set_rng_state(state: dict[str, torch.Tensor], on: torch.device) -> None:
    """Restore ``rng_state``'s generators (the GPU's only when the run goes on on a GPU)."""
    torch.set_rng_state(state["torch"])
    if "cuda" in state and on.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], on)
