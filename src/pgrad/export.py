"""``pgrad export``: a trained policy as a standalone ``torch.export`` program or ONNX file.

The exported function maps a batch of raw observations, of any batch size, to the deterministic
actions ``Agent.act(obs, deterministic=True)`` returns: observation normalisation with the saved
statistics (as Gymnasium's ``NormalizeObservation`` computes it, in float64), the policy network,
argmax / mean / squashed mean, and clipping to a ``Box`` action space's bounds.

Run a ``.pt2`` file with ``torch.export.load(path).module()(obs)``, an ``.onnx`` file with
``onnxruntime.InferenceSession(path).run(None, {"obs": obs})``.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from pgrad.agent import Agent, load, normalize_observations
from pgrad.errors import PgradError
from pgrad.policies import actor_of
from pgrad.runs import output_file

Format = Literal["pt2", "onnx"]
SUFFIX = {"pt2": ".pt2", "onnx": ".onnx"}


class DeterministicPolicy(nn.Module):
    """obs (batch, *obs_shape) -> action (batch, *action_shape)."""

    def __init__(self, agent: Agent):
        super().__init__()
        model = agent.model
        self.actor = actor_of(model)
        self.normalize = "obs_mean" in agent.normalization
        if self.normalize:
            self.register_buffer("obs_mean", agent.normalization["obs_mean"].double())
            self.register_buffer("obs_var", agent.normalization["obs_var"].double())
        space = agent.action_space
        self.clip = isinstance(space, gym.spaces.Box)
        if self.clip:
            self.register_buffer("low", torch.as_tensor(space.low, dtype=torch.float32))
            self.register_buffer("high", torch.as_tensor(space.high, dtype=torch.float32))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = obs.float()
        if self.normalize:
            x = normalize_observations(obs, self.obs_mean, self.obs_var)
        action = self.actor.act(x, deterministic=True)
        if self.clip:
            action = torch.maximum(torch.minimum(action, self.high), self.low)
        return action


def export(run_dir: str | Path, format: Format, out: str | Path | None = None) -> Path:
    """Write the run's latest policy as ``format``; returns the file written."""
    format = _checked(format)
    out = Path(out) if out is not None else Path(run_dir) / f"policy{SUFFIX[format]}"
    return export_agent(load(run_dir), format, output_file(out, (SUFFIX[format],)))


def export_agent(agent: Agent, format: Format, out: str | Path) -> Path:
    """Write ``agent``'s ``DeterministicPolicy`` to ``out`` as ``format``, batch size dynamic."""
    format = _checked(format)
    if format == "onnx":
        try:
            import onnx  # noqa: F401  (torch's exporter needs both at run time)
            import onnxscript  # noqa: F401
        except ModuleNotFoundError:
            raise PgradError(
                "ONNX export needs the onnx and onnxscript packages: pip install 'pgrad[export]'"
            ) from None
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    policy = DeterministicPolicy(agent).eval().requires_grad_(False)
    space = agent.observation_space
    # Two observations: torch.export would specialise a batch dimension of size 1.
    example = torch.as_tensor(np.stack([space.sample(), space.sample()]))
    if not isinstance(space, gym.spaces.Discrete) and space.dtype != np.uint8:
        example = example.float()  # images stay bytes: the network scales them
    batch = {"obs": {0: torch.export.Dim("batch")}}
    with torch.no_grad():  # so the policy's own no_grad adds no grad-mode switches to the graph
        program = torch.export.export(policy, (example,), dynamic_shapes=batch)
    if format == "onnx":
        with _quiet_onnx_exporter():
            torch.onnx.export(
                program, (example,), out, dynamo=True, input_names=["obs"],
                output_names=["action"], external_data=False, verbose=False,
            )  # fmt: skip
    else:
        torch.export.save(program, out)
    return Path(out)


def _checked(format: str) -> Format:
    """``format``, with ``"torchscript"`` read as ``"pt2"``: pgrad no longer writes TorchScript,
    which PyTorch deprecates."""
    if format == "torchscript":
        warnings.warn(
            "export format 'torchscript' is deprecated: pgrad now writes a torch.export program "
            "(.pt2; run it with torch.export.load(path).module()); use format 'pt2'",
            FutureWarning,
            stacklevel=3,
        )
        return "pt2"
    if format not in SUFFIX:
        raise PgradError(f"unknown export format {format!r}; expected one of {list(SUFFIX)}")
    return format  # type: ignore[return-value]


@contextmanager
def _quiet_onnx_exporter() -> Iterator[None]:
    """Silence what torch 2.13's ONNX exporter says about its own internals ("torchvision is not
    installed", a deprecated pytree check): nothing a pgrad user can act on."""
    log = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", r"`isinstance\(treespec, LeafSpec\)`", FutureWarning)
            yield
    finally:
        log.setLevel(level)
