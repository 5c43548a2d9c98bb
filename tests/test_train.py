"""Training end to end: determinism, the Python API, checkpoints, and learning."""

import csv
import io
import json

import numpy as np
import pytest
import torch

import pgrad
from pgrad.errors import PgradError
from pgrad.runs import atomic_write, checkpoints


def test_same_seed_same_metrics_and_another_seed_differs(tmp_path):
    kwargs = {"steps": 3000, "eval_every": 1000, "eval_episodes": 2}
    a = pgrad.train("reinforce_baseline", "CartPole-v1", seed=5, run_dir=tmp_path / "a", **kwargs)
    b = pgrad.train("reinforce_baseline", "CartPole-v1", seed=5, run_dir=tmp_path / "b", **kwargs)
    c = pgrad.train("reinforce_baseline", "CartPole-v1", seed=6, run_dir=tmp_path / "c", **kwargs)
    text = [(r.path / "metrics.csv").read_text() for r in (a, b, c)]
    assert text[0] == text[1]
    assert text[0] != text[2]
    assert "eval_return" in text[0].splitlines()[0]


def test_api_run_summary_load_and_act(tmp_path):
    run = pgrad.train(
        "reinforce", "CartPole-v1", steps=1000, seed=0, run_dir=tmp_path / "r", eval_episodes=3
    )
    summary = json.loads((run.path / "summary.json").read_text())
    assert {"mean_return", "std_return", "episodes", "steps", "wall_time_s"} <= set(summary)
    assert summary == run.summary and summary["episodes"] == 3 and summary["steps"] >= 1000
    agent = pgrad.load(run.path)
    obs = np.zeros(4, dtype=np.float32)
    assert agent.act(obs, deterministic=True) in (0, 1)
    assert agent.act(np.zeros((7, 4)), deterministic=True).shape == (7,)
    # The loaded policy is the trained one: deterministic evaluation reproduces the summary.
    assert agent.evaluate(3).mean() == pytest.approx(summary["mean_return"])


def test_continuous_actions_with_squash_and_state_std(tmp_path):
    run = pgrad.train(
        "reinforce_baseline", "Pendulum-v1", steps=1200, n_envs=2, eval_episodes=1,
        squash="tanh", std="state", run_dir=tmp_path / "p",
    )  # fmt: skip
    agent = pgrad.load(run.path)
    actions = agent.act(np.random.default_rng(0).normal(size=(50, 3)))
    assert actions.shape == (50, 1) and np.all(np.abs(actions) <= 2.0)


def test_checkpoint_problems_are_clear_errors(tmp_path):
    run = pgrad.train(
        "reinforce", "CartPole-v1", steps=300, run_dir=tmp_path / "r", eval_episodes=1
    )
    latest = checkpoints(run.path)[-1]
    data = latest.read_bytes()
    latest.write_bytes(data[: len(data) // 2])
    with pytest.raises(PgradError, match="is corrupt or truncated"):
        pgrad.load(run.path)
    state = torch.load(io.BytesIO(data), weights_only=True)
    state["env"] = "Acrobot-v1"
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write(latest, buffer.getvalue())
    with pytest.raises(PgradError, match="written by 'reinforce' on 'Acrobot-v1'"):
        pgrad.load(run.path)


def test_checkpoints_keep_the_newest(tmp_path):
    run = pgrad.train(
        "reinforce", "CartPole-v1", steps=2000, checkpoint_every=200, keep_checkpoints=2,
        eval_episodes=1, run_dir=tmp_path / "r",
    )  # fmt: skip
    kept = checkpoints(run.path)
    assert len(kept) == 2
    assert int(kept[-1].stem.split("-")[1]) == run.summary["steps"]
    assert not list((run.path / "checkpoints").glob(".*tmp"))


def test_resumed_and_rolled_back_logs_hold_each_step_once_in_csv_and_tensorboard(
    tmp_path, monkeypatch
):
    """Rows and warnings logged after the checkpoint a run goes back to (a resume, a NaN
    rollback) are dropped from metrics.csv and warnings.txt and, through ``purge_step``, from
    what TensorBoard reads."""
    import itertools
    import time

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from pgrad.logging import MetricsLogger

    # TensorBoard reads a directory's event files in name order: (second, host, pid, a counter
    # of this process's writers). Three writers made within one second sort by the counter as
    # text, so 9, 10, 11 would load 10 and 11 before 9 (how many writers the tests before this
    # one made decides it). Real runs write their files seconds apart; here each gets a second.
    clock = itertools.count(int(time.time()))
    monkeypatch.setattr(time, "time", lambda: float(next(clock)))

    (tmp_path / "warnings.txt").write_text("a warning of an older pgrad, without a step\n")
    first = MetricsLogger(tmp_path, 100)
    for step in (10, 20, 30, 40):
        first.write(step, {"x": 1.0})
        first.warn(f"w{step}", step)
    first.close()
    resumed = MetricsLogger(tmp_path, 100, keep_rows_to=20)  # resumed from step 20
    resumed.write(30, {"x": 2.0})
    resumed.warn("v30", 30)
    resumed.truncate(20)  # a rollback to step 20
    for step in (30, 40, 50):
        resumed.write(step, {"x": 3.0})
    resumed.warn("u40", 40)
    resumed.close()
    expected = [(10, 1.0), (20, 1.0), (30, 3.0), (40, 3.0), (50, 3.0)]
    assert (tmp_path / "warnings.txt").read_text().splitlines() == [
        "a warning of an older pgrad, without a step", "step 10: w10", "step 20: w20",
        "step 40: u40",
    ]  # fmt: skip
    board = EventAccumulator(str(tmp_path))
    board.Reload()
    assert [(e.step, e.value) for e in board.Scalars("train/x")] == expected
    with open(tmp_path / "metrics.csv", newline="") as f:
        assert [(int(r["step"]), float(r["x"])) for r in csv.DictReader(f)] == expected
    assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 3


def test_a_resumed_runs_steps_per_second_count_the_time_before_the_resume(tmp_path):
    """step / training time, as in summary.json: a run resumed at 50,000 steps after 100 s of
    training logs at most 500 steps per second, not 50,000 over the seconds since the resume
    (the bound allows a minute of a loaded machine between the logger's start and its row)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from pgrad.logging import MetricsLogger

    logger = MetricsLogger(tmp_path, 60_000, keep_rows_to=50_000, time_before=100.0)
    logger.write(50_000, {"x": 1.0})
    logger.close()
    board = EventAccumulator(str(tmp_path))
    board.Reload()
    [sps] = [e.value for e in board.Scalars("time/sps")]
    assert 50_000 / 160 < sps <= 500


@pytest.mark.parametrize("algo", ["reinforce", "reinforce_baseline"])
def test_reinforce_learns_cartpole(tmp_path, algo):
    # A random policy averages about 22; both variants pass 150 well within 40k steps.
    run = pgrad.train(algo, "CartPole-v1", steps=40_000, seed=0, run_dir=tmp_path / "r")
    rows = run.metrics()
    late = np.mean([r["episode_return"] for r in rows[-5:]])
    assert late > 150, late
    assert run.summary["mean_return"] > 150


@pytest.mark.parametrize("fast", [True, False])
def test_evaluating_during_training_does_not_change_training(tmp_path, fast):
    """The same run with and without evaluations in between logs the same training metrics:
    evaluation draws from a fork of torch's generator (it used to shift the minibatch
    permutations of every later update)."""
    import csv

    rows = []
    for eval_every in (0, 2048):
        run = pgrad.train("ppo", "CartPole-v1", steps=6144, seed=3, fast=fast, log_every=1024,
                          eval_every=eval_every, eval_episodes=2,
                          run_dir=tmp_path / f"e{eval_every}")  # fmt: skip
        with open(run.path / "metrics.csv") as f:
            rows.append(
                [{k: v for k, v in r.items() if k != "eval_return"} for r in csv.DictReader(f)]
            )
    assert len(rows[0]) == 6 and rows[0] == rows[1]


def test_callback_sees_every_logged_row_and_can_stop_the_run(tmp_path):
    """``callback`` gets each row as metrics.csv has it, with the model being trained; returning
    False stops after that row's update with a final checkpoint and an interrupted summary."""
    import csv

    seen = []

    def callback(step, row, model):
        seen.append((step, dict(row)))
        assert isinstance(model, torch.nn.Module) and model.training
        return len(seen) < 3

    run = pgrad.train("ppo", "CartPole-v1", steps=20_000, seed=0, log_every=1024,
                      eval_episodes=2, run_dir=tmp_path / "r", callback=callback)  # fmt: skip
    with open(run.path / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(seen) == len(rows) == 3
    for (step, row), written in zip(seen, rows, strict=True):
        assert int(written["step"]) == step
        assert float(written["iteration"]) == row["iteration"]
        assert float(written["episode_return"]) == pytest.approx(row["episode_return"], rel=1e-6)
    assert run.summary["interrupted"] == "callback" and run.summary["mean_return"] is None
    assert run.summary["steps"] == seen[-1][0] < 20_000
    assert checkpoints(run.path)[-1].name.endswith(f"{seen[-1][0]}.pt")


def test_a_run_from_an_uninstalled_source_tree_records_an_unknown_version(tmp_path, monkeypatch):
    import importlib
    from importlib.metadata import PackageNotFoundError

    def not_installed(name):
        raise PackageNotFoundError(name)

    monkeypatch.setattr(importlib.import_module("pgrad.train"), "version", not_installed)
    run = pgrad.train(
        "reinforce", "CartPole-v1", steps=200, run_dir=tmp_path / "r", eval_episodes=1
    )
    assert "pgrad_version: unknown" in (run.path / "config.yaml").read_text()


@pytest.mark.parametrize("threads", [1, 2])
def test_threads_sets_torch_and_blas_threads_for_the_run(tmp_path, threads):
    from threadpoolctl import threadpool_info

    from pgrad.fast import set_threads

    seen = []

    def record(step, row, model):
        blas = {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}
        seen.append((torch.get_num_threads(), blas))

    try:
        set_threads(3)  # neither value the run asks for
        pgrad.train("a2c", "CartPole-v1", steps=200, seed=0, run_dir=tmp_path / "r",
                    threads=threads, log_every=100, eval_episodes=1, callback=record)  # fmt: skip
    finally:
        set_threads(1)  # process-wide: leave the other tests on one thread
    assert seen and all(s == (threads, {threads}) for s in seen), seen
