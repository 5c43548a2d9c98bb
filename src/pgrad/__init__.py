"""pgrad: policy-gradient reinforcement learning you can read.

    grad J(theta) = E[ sum_t grad log pi_theta(a_t|s_t) * Psi_t ]

``returns`` holds the estimators of Psi_t, ``losses`` the surrogate losses, ``policies`` the
action distributions, ``rollout`` the collection of experience, and ``algos`` the algorithms
composed from them.
"""

from pgrad.agent import Agent, load
from pgrad.errors import PgradError
from pgrad.runs import Run
from pgrad.train import train

__all__ = ["Agent", "PgradError", "Run", "load", "train"]
