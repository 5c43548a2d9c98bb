"""The training loop's bookkeeping (``pgrad.loop``), shared by control and RLHF runs: when rows,
evaluations and checkpoints fall due, and how the rows since the last log merge."""

import math

import pytest

from pgrad.config import RunConfig
from pgrad.loop import Loop, average
from pgrad.watchdog import Watchdog


def test_rows_merge_by_hand_episodes_weighted_nan_skipped_missing_keys_left_out():
    rows = [
        {"episodes": 1, "episode_return": 10.0, "loss": 1.0, "eval": math.nan},
        {"episodes": 3, "episode_return": 30.0, "loss": math.nan, "eval": 5.0},
        {"episodes": 0, "episode_return": math.nan, "loss": 3.0, "eval": math.nan, "kl": 0.5},
    ]
    row = average(rows)
    assert list(row) == ["episodes", "episode_return", "loss", "eval", "kl"]
    assert row["episodes"] == 4
    assert row["episode_return"] == pytest.approx((10.0 * 1 + 30.0 * 3) / 4)
    assert row["loss"] == pytest.approx(2.0)
    assert row["eval"] == 5.0 and row["kl"] == 0.5


def test_rows_without_episodes_are_plain_means_and_all_nan_stays_nan():
    row = average([{"reward": 1.0, "ev": math.nan}, {"reward": 2.0, "ev": math.nan}])
    assert row["reward"] == 1.5 and math.isnan(row["ev"]) and "episodes" not in row


def test_logs_evaluations_and_checkpoints_fall_due_on_their_multiples():
    cfg = RunConfig(log_every=4, eval_every=6, checkpoint_every=10)
    loop = Loop(cfg, Watchdog(12))
    logged, evaluated, saved = [], [], []
    while loop.step < 12:
        loop.advance(1, {"x": float(loop.step)})
        ev = loop.evaluation_due(cfg)
        if ev:
            evaluated.append(loop.step)
        if loop.log_due(cfg, 12, ev):
            logged.append((loop.step, loop.take()["x"]))
        if loop.checkpoint_due(cfg):
            saved.append(loop.step)
    assert evaluated == [6, 12] and saved == [10]
    # every 4 steps, after each evaluation, and at the end; each row the mean of its updates
    assert logged == [(4, 1.5), (6, 4.5), (8, 6.5), (12, 9.5)]
    assert loop.iteration == 12 and loop.pending == []


def test_a_resumed_loop_continues_the_schedule():
    cfg = RunConfig(log_every=4, eval_every=6, checkpoint_every=10)
    loop = Loop(cfg, Watchdog(30), step=13)
    assert (loop.next_log, loop.next_eval, loop.next_checkpoint) == (16, 18, 20)
