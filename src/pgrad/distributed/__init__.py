"""Transports for workers: ``hogwild`` (processes on this machine sharing memory) and
``ray_backend`` (Ray actors, ``pip install 'pgrad[ray]'``). They run the worker objects they
are given and never import an algorithm; ``pgrad.launch`` plugs them into the algorithms that
use them (A2C/PPO's rollouts, A3C's workers and learner)."""

import numpy as np


def worker_seed(seed: int, rank: int, start: int = 0, replaced: int = 0) -> int:
    """The seed of worker ``rank``'s envs and action sampling: ``seed + 1000 (rank + 1)``, plus
    100,000 for each dead worker replaced so far. A run resumed ``start`` steps (or rounds) in
    mixes ``start`` in, so that its workers do not replay the episodes and random draws its
    first workers began with."""
    base = seed + 1000 * (rank + 1) + 100_000 * replaced
    if start == 0:
        return base
    return int(np.random.SeedSequence([base, start]).generate_state(1)[0])
