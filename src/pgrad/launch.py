"""An algorithm with its workers where ``backend`` puts them.

``algos/`` never imports ``distributed/``: an algorithm that can use workers elsewhere says what
it hands them (``AlgoSpec.distributes``), and this module, above both, plugs in the transport:

- ``rollouts`` (A2C, PPO): a collector of batches, the algorithm's own ``Rollout`` by default
  or ``RayRollout`` with ``backend: ray``;
- ``gradients`` (A3C): worker processes on this machine that step theta in shared memory
  (``Hogwild``), or Ray actors whose gradients the learner applies (``RayGradients``).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from pgrad import algos
from pgrad.config import Config
from pgrad.envs import vec_env_id


def algorithm(name: str, config: Config, envs: gym.vector.VectorEnv, seed: int | None) -> Any:
    """The algorithm ``name`` on ``envs``, its workers on ``config.backend``'s transport."""
    spec = algos.get(name)
    ray = getattr(config, "backend", "local") == "ray"
    if spec.distributes == "gradients":
        if ray:
            from pgrad.distributed.ray_backend import RayGradients

            return spec.make(config, envs, seed, RayGradients(spec.worker))
        from pgrad.distributed.hogwild import Hogwild

        return spec.make(config, envs, seed, Hogwild(spec.worker))
    if spec.distributes == "rollouts" and ray:
        from pgrad.distributed.ray_backend import RayRollout

        return spec.make(config, envs, seed, RayRollout(config, vec_env_id(envs), seed))
    return spec.make(config, envs, seed)
