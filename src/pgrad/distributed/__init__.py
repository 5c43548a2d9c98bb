"""Transports for workers: ``hogwild`` (processes on this machine sharing memory) and
``ray_backend`` (Ray actors, ``pip install 'pgrad[ray]'``). They run the worker objects they
are given and never import an algorithm; ``pgrad.launch`` plugs them into the algorithms that
use them (A2C/PPO's rollouts, A3C's workers and learner)."""
