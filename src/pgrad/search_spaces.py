"""The hyperparameter ranges ``pgrad tune`` searches, one table per algorithm.

The ranges follow rl-zoo's ``hyperparams_opt.py`` (log-uniform learning rates and entropy
coefficients, rl-zoo's choices of ``n_steps``, ``batch_size``, ``gamma``, ...), named by
pgrad's config keys. Every key is a key of the algorithm's config, and every value a sampler
can draw passes the config's checks (``tests/test_tune.py`` samples each table many times).
Keys a table leaves out keep the algorithm's defaults for the env (``defaults.yaml``).

Choices that cannot go together are constrained rather than left to fail: ``at_most`` names
config keys whose product bounds the value (PPO's minibatch cannot exceed its rollout of
``n_steps * n_envs`` transitions), and a value above the bound becomes the largest choice
within it, as rl-zoo clips ``batch_size`` to ``n_steps``. Tuple-valued keys (``hidden_sizes``)
are choices of strings such as ``"64,64"``, which the config parses; Optuna's categorical
choices must be plain values.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Float:
    """A float drawn from [low, high], uniformly or (``log``) log-uniformly."""

    low: float
    high: float
    log: bool = False


@dataclass(frozen=True)
class Int:
    """An integer drawn from [low, high], uniformly or (``log``) log-uniformly."""

    low: int
    high: int
    log: bool = False


@dataclass(frozen=True)
class Choice:
    """One of ``values``; with ``at_most``, at most the product of those config keys."""

    values: tuple[bool | int | float | str | None, ...]
    at_most: tuple[str, ...] = ()


Dimension = Float | Int | Choice

GAMMA = Choice((0.9, 0.95, 0.98, 0.99, 0.995, 0.999, 0.9999))
GAE_LAMBDA = Choice((0.8, 0.9, 0.92, 0.95, 0.98, 0.99, 1.0))
MAX_GRAD_NORM = Choice((0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 2.0, 5.0))
NETWORK = Choice(("64,64", "256,256"))
"""rl-zoo's ``small`` and ``medium`` net_arch."""
ACTIVATION = Choice(("tanh", "relu"))
N_STEPS = Choice((8, 16, 32, 64, 128, 256, 512, 1024, 2048))

SPACES: dict[str, dict[str, Dimension]] = {
    "ppo": {
        "learning_rate": Float(1e-5, 1e-2, log=True),
        "n_steps": N_STEPS,
        "batch_size": Choice((32, 64, 128, 256, 512), at_most=("n_steps", "n_envs")),
        "n_epochs": Choice((1, 5, 10, 20)),
        "gamma": GAMMA,
        "gae_lambda": GAE_LAMBDA,
        "clip_range": Choice((0.1, 0.2, 0.3, 0.4)),
        "entropy_coef": Float(1e-8, 0.1, log=True),
        "value_coef": Float(0.0, 1.0),
        "max_grad_norm": MAX_GRAD_NORM,
        "hidden_sizes": NETWORK,
        "activation": ACTIVATION,
    },
    "a2c": {
        "learning_rate": Float(1e-5, 1e-2, log=True),
        "n_steps": N_STEPS,
        "gamma": GAMMA,
        "advantage": Choice(("nstep", "gae")),
        "gae_lambda": GAE_LAMBDA,
        "normalize_advantage": Choice((False, True)),
        "optimizer": Choice(("adam", "rmsprop")),
        "entropy_coef": Float(1e-8, 0.1, log=True),
        "value_coef": Float(0.0, 1.0),
        "max_grad_norm": MAX_GRAD_NORM,
        "hidden_sizes": NETWORK,
        "activation": ACTIVATION,
    },
    "reinforce_baseline": {
        "learning_rate": Float(1e-5, 1e-2, log=True),
        "gamma": GAMMA,
        "n_envs": Choice((1, 2, 4, 8)),
        "episodes_per_env": Choice((1, 2, 4)),
        "value_epochs": Choice((1, 5, 10, 20, 40)),
        "normalize_advantage": Choice((False, True)),
        "entropy_coef": Float(1e-8, 0.1, log=True),
        "max_grad_norm": Choice((None, 0.5, 1.0, 5.0)),
        "hidden_sizes": NETWORK,
        "activation": ACTIVATION,
    },
    "sac": {
        "learning_rate": Float(1e-5, 1e-2, log=True),
        "gamma": GAMMA,
        "batch_size": Choice((16, 32, 64, 128, 256, 512, 1024)),
        "buffer_size": Choice((10_000, 100_000, 1_000_000)),
        "learning_starts": Choice((0, 100, 1000, 10_000)),
        "train_freq": Choice((1, 4, 8, 16, 32, 64)),
        "gradient_steps": Choice((1, 2, 4, 8)),
        "tau": Choice((0.001, 0.005, 0.01, 0.02, 0.05, 0.08)),
        "hidden_sizes": Choice(("64,64", "256,256", "400,300")),
        "activation": ACTIVATION,
    },
}
"""Search space of each algorithm ``pgrad tune`` can tune, by config key."""
