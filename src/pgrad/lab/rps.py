"""Rock-paper-scissors against an opponent that exploits the learner's current policy.

The payoff to the learner is ``PAYOFF[a, b]`` (+1 win, -1 loss, 0 draw) for its action a and the
opponent's b. Every round the opponent plays a best response to the learner's current policy pi,
the action b maximising its expected gain -sum_a pi(a) PAYOFF[a, b]. The learner's
exploitability is that gain,

    exploitability(pi) = max_b  -sum_a pi(a) PAYOFF[a, b]   (0 only for the uniform pi),

so the learner's expected payoff is -exploitability(pi): the best it can do is the mixed
equilibrium (1/3, 1/3, 1/3).

- The policy-gradient learner has a softmax policy pi = softmax(theta) and ascends REINFORCE
  estimates sum_i (r_i - mean r) grad log pi(a_i) over a batch of games per round, with a step
  size decaying as 1 / sqrt(round). Its exploitability falls towards 0: it ends up mixing.
- The greedy learner keeps the mean payoff of each action and plays the best one
  deterministically (argmax): a deterministic policy is always fully exploited (exploitability 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pgrad.plot import pyplot, save
from pgrad.runs import write_json

ACTIONS = ("rock", "paper", "scissors")
PAYOFF = np.array([[0.0, -1.0, 1.0], [1.0, 0.0, -1.0], [-1.0, 1.0, 0.0]])


def softmax(theta: np.ndarray) -> np.ndarray:
    z = np.exp(theta - theta.max())
    return z / z.sum()


def exploitability(pi: np.ndarray) -> float:
    """The exploiting opponent's expected gain against ``pi``."""
    return float(np.max(-(pi @ PAYOFF)))


def best_response(pi: np.ndarray, rng: np.random.Generator) -> int:
    gains = -(pi @ PAYOFF)
    return int(rng.choice(np.flatnonzero(np.isclose(gains, gains.max()))))


@dataclass
class History:
    policies: np.ndarray  # (rounds, 3): the learner's policy at each round
    exploitability: np.ndarray  # (rounds,)
    payoff: np.ndarray  # (rounds,): the learner's mean payoff in that round


def policy_gradient(rounds: int = 3000, games: int = 32, lr: float = 0.1, seed: int = 0) -> History:
    """Softmax learner, REINFORCE with the batch-mean baseline, step lr / sqrt(1 + round/100)."""
    rng = np.random.default_rng(seed)
    theta = np.array([1.0, 0.0, -0.5])  # start far from uniform: mostly rock
    policies, payoffs = [], []
    for k in range(rounds):
        pi = softmax(theta)
        b = best_response(pi, rng)
        a = rng.choice(3, size=games, p=pi)
        r = PAYOFF[a, b]
        score = np.eye(3)[a] - pi  # grad log pi(a) for the softmax
        theta += lr / np.sqrt(1 + k / 100) * ((r - r.mean())[:, None] * score).mean(0)
        policies.append(pi)
        payoffs.append(r.mean())
    policies = np.array(policies)
    return History(policies, np.array([exploitability(p) for p in policies]), np.array(payoffs))


def greedy(rounds: int = 3000, games: int = 32, seed: int = 0) -> History:
    """Deterministic learner: plays the action with the best mean payoff so far."""
    rng = np.random.default_rng(seed)
    totals, counts = np.zeros(3), np.zeros(3)
    policies, payoffs = [], []
    for _ in range(rounds):
        means = np.where(counts > 0, totals / np.maximum(counts, 1), 0.0)
        pi = np.eye(3)[int(np.argmax(means))]
        b = best_response(pi, rng)
        a = rng.choice(3, size=games, p=pi)
        r = PAYOFF[a, b]
        np.add.at(totals, a, r)
        np.add.at(counts, a, 1)
        policies.append(pi)
        payoffs.append(r.mean())
    policies = np.array(policies)
    return History(policies, np.array([exploitability(p) for p in policies]), np.array(payoffs))


def run(out: Path, rounds: int = 3000, seed: int = 0) -> dict:
    """Both learners; ``results.json`` and ``rps.png`` in ``out``."""
    pg, gr = policy_gradient(rounds, seed=seed), greedy(rounds, seed=seed)
    tail = max(1, rounds // 10)
    results = {
        "rounds": rounds,
        "policy_gradient": {
            "final_policy": dict(zip(ACTIONS, pg.policies[-1].round(4).tolist(), strict=True)),
            "exploitability_last_10pct": float(pg.exploitability[-tail:].mean()),
            "payoff_last_10pct": float(pg.payoff[-tail:].mean()),
        },
        "greedy": {
            "exploitability_last_10pct": float(gr.exploitability[-tail:].mean()),
            "payoff_last_10pct": float(gr.payoff[-tail:].mean()),
        },
    }
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "results.json", results)
    fig, (ax1, ax2) = pyplot().subplots(1, 2, figsize=(10, 4))
    x = np.arange(1, rounds + 1)
    ax1.plot(x, pg.exploitability, label="policy gradient (softmax)")
    ax1.plot(x, gr.exploitability, label="greedy (argmax)")
    ax1.set_xscale("log")
    ax1.set_xlabel("round")
    ax1.set_ylabel("exploitability (opponent's expected gain per game)")
    ax1.set_title("Exploitability against a best-responding opponent")
    for i, name in enumerate(ACTIONS):
        ax2.plot(x, pg.policies[:, i], label=f"pi({name})")
    ax2.axhline(1 / 3, color="black", linestyle=":", label="uniform 1/3")
    ax2.set_xscale("log")
    ax2.set_xlabel("round")
    ax2.set_ylabel("probability")
    ax2.set_title("Policy-gradient learner's policy")
    save(fig, out / "rps.png", legend_fontsize=8)
    return results
