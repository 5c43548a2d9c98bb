"""``pgrad export``: a trained policy as a standalone TorchScript or ONNX file.

The exported function maps a batch of raw observations to the deterministic actions
``Agent.act(obs, deterministic=True)`` returns: observation normalisation with the saved
statistics (as Gymnasium's ``NormalizeObservation`` computes it, in float64), the policy network,
argmax / mean / squashed mean, and clipping to a ``Box`` action space's bounds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import gymnasium as gym
import torch
from torch import nn

from pgrad.agent import Agent, load, normalize_observations
from pgrad.errors import PgradError
from pgrad.policies import actor_of

Format = Literal["torchscript", "onnx"]
SUFFIX = {"torchscript": ".pt", "onnx": ".onnx"}


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
    if format not in SUFFIX:
        raise PgradError(f"unknown export format {format!r}; expected one of {list(SUFFIX)}")
    agent = load(run_dir)
    policy = DeterministicPolicy(agent).eval().requires_grad_(False)
    space = agent.observation_space
    example = torch.as_tensor(space.sample()[None])
    if not isinstance(space, gym.spaces.Discrete):
        example = example.float()
    out = Path(out) if out is not None else Path(run_dir) / f"policy{SUFFIX[format]}"
    with torch.no_grad():
        if format == "torchscript":
            torch.jit.trace(policy, example).save(str(out))
        else:
            try:
                import onnx  # noqa: F401  (torch's exporter needs it at run time)
            except ModuleNotFoundError:
                raise PgradError(
                    "ONNX export needs the onnx package: pip install 'pgrad[export]'"
                ) from None
            torch.onnx.export(
                policy, (example,), str(out), dynamo=False, input_names=["obs"],
                output_names=["action"], dynamic_axes={"obs": {0: "batch"}, "action": {0: "batch"}},
            )  # fmt: skip
    return out
