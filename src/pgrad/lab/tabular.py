"""Small tabular MDPs where the objective and its policy gradient are known in closed form.

An episodic MDP with states 0..S-1, actions 0..A-1, ``P[s, a, s']`` the probability of moving to
s' (each row sums to 1 - ``P_end[s, a]``, the rest being the probability that the episode
ends), ``R[s, a]`` the expected reward and ``mu`` the start distribution. Under the tabular
softmax policy pi(a|s) = exp(theta[s, a]) / sum_b exp(theta[s, b]):

    P_pi[s, s'] = sum_a pi(a|s) P[s, a, s'],       r_pi[s] = sum_a pi(a|s) R[s, a]
    V = (I - gamma P_pi)^{-1} r_pi,                 J(theta) = mu^T V
    Q[s, a] = R[s, a] + gamma sum_s' P[s, a, s'] V[s']

and by the policy gradient theorem, with d = mu^T (I - gamma P_pi)^{-1} the discounted state
visitation (not normalised) and d log pi(a|s) / d theta[s, b] = 1[a = b] - pi(b|s):

    dJ / d theta[s, b] = d[s] pi(b|s) (Q[s, b] - V[s]).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class TabularMDP:
    P: np.ndarray  # (S, A, S): transition probabilities; rows sum to 1 - P_end
    R: np.ndarray  # (S, A): expected reward
    mu: np.ndarray  # (S,): start distribution
    gamma: float
    reward_noise: float = 0.0
    """Sampled rewards are R[s, a] + N(0, reward_noise^2)."""
    name: str = "mdp"

    @property
    def n_states(self) -> int:
        return self.P.shape[0]

    @property
    def n_actions(self) -> int:
        return self.P.shape[1]

    @property
    def P_end(self) -> np.ndarray:
        """(S, A): the probability that the episode ends after (s, a)."""
        return 1.0 - self.P.sum(-1)


def random_mdp(
    seed: int, n_states: int = 5, n_actions: int = 3, gamma: float = 0.9, end: float = 0.15
) -> TabularMDP:
    """Dirichlet transitions, mean rewards drawn from N(1, 1), episodes ending with probability
    ``end`` after every step (mean length 1 / end), uniform start state, noisy rewards."""
    rng = np.random.default_rng(seed)
    P = rng.dirichlet(np.ones(n_states), size=(n_states, n_actions)) * (1.0 - end)
    R = rng.normal(loc=1.0, size=(n_states, n_actions))
    mu = np.full(n_states, 1.0 / n_states)
    return TabularMDP(P, R, mu, gamma, reward_noise=0.5, name=f"random-mdp (seed {seed})")


def short_corridor() -> TabularMDP:
    """Sutton & Barto's short corridor with switched actions (Example 13.1): reward -1 per
    step, states 0, 1, 2 then the goal; "right" moves right except in state 1, where the actions
    are switched. Every state looks the same to the policy in the book; here the tabular policy
    can tell them apart, so the optimum is deterministic."""
    P = np.zeros((3, 2, 3))
    P[0, 0, 0], P[0, 1, 1] = 1.0, 1.0  # left stays, right moves
    P[1, 0, 2], P[1, 1, 0] = 1.0, 1.0  # switched
    P[2, 0, 1] = 1.0  # left goes back; right from state 2 reaches the goal (episode ends)
    R = np.full((3, 2), -1.0)
    return TabularMDP(P, R, np.array([1.0, 0.0, 0.0]), gamma=0.95, name="short-corridor")


def softmax(theta: np.ndarray) -> np.ndarray:
    z = np.exp(theta - theta.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)


@dataclass(frozen=True)
class Exact:
    """The closed-form quantities of a policy on an MDP."""

    pi: np.ndarray  # (S, A)
    V: np.ndarray  # (S,)
    Q: np.ndarray  # (S, A)
    d: np.ndarray  # (S,) discounted visitation from mu
    J: float
    gradient: np.ndarray  # (S, A): dJ/dtheta


def exact(mdp: TabularMDP, theta: np.ndarray) -> Exact:
    """V, Q, J and the policy gradient dJ/dtheta of the softmax policy ``theta``."""
    pi = softmax(theta)
    P_pi = np.einsum("sa,sat->st", pi, mdp.P)
    r_pi = (pi * mdp.R).sum(-1)
    M = np.eye(mdp.n_states) - mdp.gamma * P_pi
    V = np.linalg.solve(M, r_pi)
    Q = mdp.R + mdp.gamma * mdp.P @ V
    d = np.linalg.solve(M.T, mdp.mu)
    gradient = d[:, None] * pi * (Q - V[:, None])
    return Exact(pi, V, Q, d, float(mdp.mu @ V), gradient)


def objective(mdp: TabularMDP, theta: torch.Tensor) -> torch.Tensor:
    """J(theta) = mu^T (I - gamma P_pi)^{-1} r_pi in torch (float64), so autograd can
    differentiate the closed form: an independent check of ``exact(...).gradient``."""
    P, R, mu = (torch.as_tensor(x, dtype=torch.float64) for x in (mdp.P, mdp.R, mdp.mu))
    pi = torch.softmax(theta, -1)
    P_pi = torch.einsum("sa,sat->st", pi, P)
    r_pi = (pi * R).sum(-1)
    V = torch.linalg.solve(torch.eye(mdp.n_states, dtype=torch.float64) - mdp.gamma * P_pi, r_pi)
    return mu @ V


@dataclass
class Episodes:
    """Sampled episodes, concatenated: ``episode[i]`` says which episode step i belongs to."""

    states: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    ends: np.ndarray  # bool: the episode ended after this step
    episode: np.ndarray

    @property
    def count(self) -> int:
        return int(self.ends.sum())


def sample(
    mdp: TabularMDP, theta: np.ndarray, n: int, rng: np.random.Generator, max_steps: int = 1000
) -> Episodes:
    """``n`` episodes of the softmax policy, simulated side by side."""
    pi = softmax(theta)
    S, A = mdp.n_states, mdp.n_actions
    # Next-state distribution with an extra "ended" outcome S.
    outcomes = np.concatenate([mdp.P, mdp.P_end[..., None]], -1).cumsum(-1)
    s = rng.choice(S, size=n, p=mdp.mu)
    alive = np.arange(n)
    rows: list[tuple[np.ndarray, ...]] = []
    for _ in range(max_steps):
        a = (rng.random(len(s))[:, None] > pi[s].cumsum(-1)).sum(-1).clip(max=A - 1)
        r = mdp.R[s, a] + mdp.reward_noise * rng.normal(size=len(s))
        nxt = (rng.random(len(s))[:, None] > outcomes[s, a]).sum(-1).clip(max=S)
        ended = nxt == S
        rows.append((alive, s, a, r, ended))
        alive, s = alive[~ended], nxt[~ended]
        if len(alive) == 0:
            break
    else:
        raise RuntimeError(f"episodes still running after {max_steps} steps")
    ep, st, ac, rw, en = (np.concatenate(x) for x in zip(*rows, strict=True))
    order = np.lexsort((np.arange(len(ep)), ep))  # by episode, then time
    return Episodes(st[order], ac[order], rw[order], en[order], ep[order])


def scores(mdp: TabularMDP, theta: np.ndarray, episodes: Episodes) -> np.ndarray:
    """d log pi(a_t|s_t) / d theta for every step, flattened to (steps, S * A)."""
    pi = softmax(theta)
    out = np.zeros((len(episodes.states), mdp.n_states, mdp.n_actions))
    steps = np.arange(len(episodes.states))
    out[steps, episodes.states] = -pi[episodes.states]
    out[steps, episodes.states, episodes.actions] += 1.0
    return out.reshape(len(steps), -1)
