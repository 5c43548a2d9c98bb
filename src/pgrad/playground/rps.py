"""Rock-paper-scissors from the lab (``pgrad.lab.rps``), played back round by round.

The lab's softmax learner ascends REINFORCE estimates against an opponent that best-responds to
its current policy. Its whole history takes well under a second to compute, so the worker
computes it with the lab's own function and then sends it at the pace of a training run: one
row (payoff, exploitability, entropy) and one policy every few rounds.
"""

from __future__ import annotations

import numpy as np

from pgrad.lab.rps import ACTIONS, PAYOFF, policy_gradient
from pgrad.playground.lifeline import Channel, Control
from pgrad.watchdog import Watchdog

ROWS = 300
"""Rows a whole game is sent as."""
PACE_S = 0.05
"""Seconds between rows: a 3,000-round game plays in about 15 seconds."""


def play(rounds: int, lr: float, seed: int, channel: Channel, control: Control) -> None:
    """Play ``rounds`` rounds of the lab's learner with step size ``lr``."""
    history = policy_gradient(rounds, games=32, lr=lr, seed=seed)
    chunk = max(1, rounds // ROWS)
    watchdog = Watchdog(rounds)
    for start in range(0, rounds, chunk):
        control.wait_while_paused()
        if control.stopped.is_set():
            break
        end = min(start + chunk, rounds)
        pi = history.policies[end - 1]
        row = {
            "episode_return": float(history.payoff[start:end].mean()),
            "exploitability": float(history.exploitability[start:end].mean()),
            "entropy": float(-(pi * np.log(np.maximum(pi, 1e-12))).sum()),
        }
        channel.send({"type": "row", "step": end, **row})
        for message in watchdog.update(end, row):
            channel.send({"type": "warning", "step": end, "message": message})
        opponent = ACTIONS[int(np.argmax(-(pi @ PAYOFF)))]
        scene = f"round {end:,}: the opponent best-responds with {opponent}"
        channel.send({"type": "frame", "probs": pi.tolist(), "episode": end, "scene": scene})
        control.stopped.wait(PACE_S)
    state = "stopped" if control.stopped.is_set() else "finished"
    final = history.policies[-1].round(3).tolist()
    channel.send({"type": "status", "state": state, "summary": {"final_policy": final}})
