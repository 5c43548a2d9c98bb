"""The lab's gradient-estimator measurement (``pgrad.lab.variance.gym_table``) at a run's
current policy, in a background process of its own.

It reads a copy of the run's latest checkpoint (taken by the server), so training goes on and
writes new checkpoints meanwhile. The estimators' bias and variance come back as one event.
"""

from __future__ import annotations

from dataclasses import asdict
from multiprocessing.connection import Connection

from pgrad.playground.lifeline import Channel, Control

EPISODES = 80
"""Episodes each estimator's variance is measured over."""
REFERENCE = 240
"""Episodes of the reference gradient the bias is measured against."""
SHOWN = ("total return", "reward-to-go", "reward-to-go - V", "TD(0)", "GAE(0.5)", "GAE(0.9)",
         "GAE(0.95)", "GAE(0.99)")  # fmt: skip
"""The estimators the page draws: REINFORCE's two forms, the baseline, TD and GAE(lambda)."""


def main(conn: Connection, env_id: str, policy_dir: str, seed: int) -> None:
    """Measure at the policy in ``policy_dir`` and send one ``measure`` event."""
    from pgrad.lab.variance import gym_table

    channel = Channel(conn)
    Control(conn).start()  # ends this process with the server
    try:
        rows, info = gym_table(env_id, policy_dir, EPISODES, REFERENCE, seed)
    except Exception as e:  # shown on the page
        channel.send({"type": "measure", "error": f"{type(e).__name__}: {e}"})
        return
    shown = [asdict(r) for r in rows if r.estimator in SHOWN]
    channel.send({"type": "measure", "rows": shown, "info": info})
