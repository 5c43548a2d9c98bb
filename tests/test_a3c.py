"""A3C on local processes: the Hogwild traps of current PyTorch, and clean stops.

Each trap named in ``pgrad.distributed.hogwild``'s docstring has a test here that fails if the guard
against it is removed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from cli_runner import HANG_GUARD_S
from torch import nn

from pgrad import launch
from pgrad.algos.a3c import A3CConfig, Gradient, Learner, push_gradients
from pgrad.distributed import worker_seed
from pgrad.distributed.hogwild import Hogwild, _Shared, _work, share_optimizer_state
from pgrad.envs import make_vec_env
from pgrad.fast import FlatParameters

TESTS = Path(__file__).parent


def _loss(model: nn.Module, x: float) -> torch.Tensor:
    return (model(torch.tensor([[x, 2.0 * x]])) ** 2).sum()


def test_pushed_gradient_is_the_latest_local_gradient_after_zero_grad_to_none():
    torch.manual_seed(0)
    local, shared = nn.Linear(2, 1), nn.Linear(2, 1)
    for x in [1.0, -3.0, 0.5]:
        local.zero_grad(set_to_none=True)  # PyTorch >= 2.0's default: .grad becomes None
        _loss(local, x).backward()
        for lp, sp in zip(local.parameters(), shared.parameters(), strict=True):
            push_gradients(lp.grad, sp)
        expected = torch.autograd.grad(_loss(local, x), list(local.parameters()))
        for sp, g in zip(shared.parameters(), expected, strict=True):
            torch.testing.assert_close(sp.grad, g)


def test_aliasing_the_shared_grad_once_goes_stale_under_zero_grad_to_none():
    """The classic trick this module does not use, shown to fail: why push_gradients exists."""
    local, shared = nn.Linear(2, 1), nn.Linear(2, 1)
    _loss(local, 1.0).backward()
    for lp, sp in zip(local.parameters(), shared.parameters(), strict=True):
        sp.grad = lp.grad  # aliased once
    local.zero_grad(set_to_none=True)
    _loss(local, -3.0).backward()
    assert not torch.equal(shared.weight.grad, local.weight.grad)


def _child_step(optimizer: torch.optim.Optimizer) -> None:
    theta = optimizer.param_groups[0]["params"][0]
    theta.grad = torch.ones_like(theta)
    optimizer.step()


def _shared_adam() -> tuple[torch.nn.Parameter, torch.optim.Adam]:
    theta = nn.Parameter(torch.zeros(5))
    theta.data.share_memory_()
    return theta, torch.optim.Adam([theta], lr=0.1)


def test_optimizer_state_is_shared_with_worker_processes():
    theta, optimizer = _shared_adam()
    share_optimizer_state(optimizer)
    assert all(v.is_shared() for v in optimizer.state[theta].values())
    for _ in range(2):  # two "workers", one after the other
        child = mp.get_context("spawn").Process(target=_child_step, args=(optimizer,))
        child.start()
        child.join(60)
        assert child.exitcode == 0
    state = optimizer.state[theta]
    assert float(state["step"]) == 2.0  # both workers' steps counted in one shared state
    torch.testing.assert_close(state["exp_avg"], torch.full((5,), 0.19))  # 0.9 * 0.1 + 0.1
    torch.testing.assert_close(state["exp_avg_sq"], torch.full((5,), 0.001999))
    # Adam's bias-corrected step is lr * 1 each time: both moved the shared parameters.
    torch.testing.assert_close(theta.detach(), torch.full((5,), -0.2), rtol=0, atol=1e-5)


def test_without_shared_state_a_worker_steps_a_private_optimizer():
    """What ``share_optimizer_state`` prevents: state created lazily in the child stays there."""
    theta, optimizer = _shared_adam()
    child = mp.get_context("spawn").Process(target=_child_step, args=(optimizer,))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    assert len(optimizer.state[theta]) == 0  # the learner never sees the moments or the step


def test_flat_parameters_in_shared_memory_keep_the_model_views():
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    flat = FlatParameters(model)
    flat.param.data.share_memory_()
    assert all(p.is_shared() for p in model.parameters())
    with torch.no_grad():
        flat.param.fill_(0.5)
    assert all(bool((p == 0.5).all()) for p in model.parameters())


class _TenStepRollouts:
    """A stand-in worker: every rollout is 10 steps with a gradient of ones."""

    def gradient(self, theta: torch.Tensor, version: int) -> Gradient:
        empty = np.zeros(0)
        return Gradient(version, 10, empty, empty, grad=torch.ones_like(theta))

    def close(self) -> None:
        pass


def test_a_worker_anneals_the_rate_by_the_steps_before_its_rollout():
    """lr_k = 0.01 (1 - 10 k / 100) for the k-th rollout of 10 steps, as A2C and PPO anneal
    (and the Ray transport): the k-th step may not already count its own rollout."""
    config = A3CConfig(steps=100, learning_rate=0.01, anneal_lr=True)
    theta = nn.Parameter(torch.zeros(3))
    learner = Learner(config, torch.optim.SGD([theta], lr=config.learning_rate))
    rates = []
    apply = learner.apply
    learner.apply = lambda grad, steps: rates.append(apply(grad, steps)) or rates[-1]
    shared = _Shared(mp.get_context("spawn"), 0)
    _work(0, _TenStepRollouts(), learner, shared, os.getppid())
    assert rates == pytest.approx([0.01 * (1 - 10 * k / 100) for k in range(10)])
    # plain SGD on a gradient of ones moves theta by minus the sum of the rates
    torch.testing.assert_close(theta.detach(), torch.full((3,), -0.01 * 5.5))


def test_worker_seeds_are_distinct_and_a_resume_does_not_reuse_them():
    """A run from scratch keeps its seeds (seed + 1000 (rank + 1), + 100,000 per replacement);
    a resumed run's workers get seeds no worker of the run had, different for each resume."""
    assert [worker_seed(7, rank) for rank in range(3)] == [1007, 2007, 3007]
    assert worker_seed(7, 1, replaced=2) == 200_000 + 2007
    fresh = {worker_seed(7, r, 0, k) for r in range(8) for k in range(4)}
    resumed = [worker_seed(7, r, start, k) for start in (1, 2048, 10**6) for r in range(8)
               for k in range(4)]  # fmt: skip
    assert len(fresh) == 32 and len(set(resumed)) == len(resumed) == 96
    assert fresh.isdisjoint(resumed)


class _RecordedProcess:
    started: ClassVar[list[tuple]] = []

    def __init__(self, target, args, daemon, name):
        self.args = args

    def start(self) -> None:
        _RecordedProcess.started.append(self.args[2])  # (config, env_id, seed)


def test_hogwild_seeds_a_resumed_runs_workers_afresh(monkeypatch):
    """Hogwild.start at 0 steps and at 4096: the workers' seeds (what ``make`` receives)."""
    config = A3CConfig(workers=2, seed=3)
    optimizer = torch.optim.Adam([nn.Parameter(torch.zeros(2))])
    learner = Learner(config, optimizer)
    seeds = {}
    for steps in (0, 4096):
        transport = Hogwild(make=None)
        monkeypatch.setattr(transport.context, "Process", _RecordedProcess)
        _RecordedProcess.started = []
        transport.start(config, "CartPole-v1", learner, steps)
        seeds[steps] = [args[2] for args in _RecordedProcess.started]
    assert seeds[0] == [1003, 2003]
    assert seeds[4096] == [worker_seed(3, 0, 4096), worker_seed(3, 1, 4096)]
    assert set(seeds[4096]).isdisjoint(seeds[0])


def test_workers_are_spawned_with_one_thread_each_and_train_the_shared_model():
    config = A3CConfig(steps=20_000, workers=2, n_envs=4, seed=0)
    envs = make_vec_env("CartPole-v1", 1)
    algo = launch.algorithm("a3c", config, envs, 0)
    before = algo.flat.param.detach().clone()
    rows = []
    try:
        while algo.steps < config.steps:
            rows.append(algo.iterate())
        transport = algo.transport
        assert transport.context.get_start_method() == "spawn"
        assert sorted(transport.worker_threads) == [1, 1]
        assert len(transport.processes) == 2
    finally:
        algo.close()
    assert not torch.equal(algo.flat.param.detach(), before)
    lags = [r["policy_lag"] for r in rows if r["policy_lag"] == r["policy_lag"]]
    assert lags and max(lags) >= 0
    returns = [r["episode_return"] for r in rows[-10:] if r["episodes"]]
    # A random policy lasts ~22 steps; A2C's batched update reaches ~150 by 20k steps.
    assert sum(returns) / len(returns) > 50


def _marked_processes(marker: str) -> list[int]:
    """Live processes whose environment carries ``marker`` (the run and its workers)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        if marker.encode() in environ and "\nState:\tZ" not in status:
            found.append(int(pid))
    return found


def _a3c(run_dir: Path, env: str, steps: int, marker: str) -> subprocess.Popen:
    environ = {**os.environ, "PGRAD_TEST_MARKER": marker, "PYTHONPATH": str(TESTS)}
    return subprocess.Popen(
        [sys.executable, "-m", "pgrad", "train", "a3c", "--env", env, "--steps", str(steps),
         "--workers", "2", "--run-dir", str(run_dir), "--no-progress",
         "--set", "log_every=500", "--set", "eval_episodes=2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environ,
    )  # fmt: skip


def _wait_for_rows(proc: subprocess.Popen, run_dir: Path) -> None:
    deadline = time.time() + 300  # a hang guard, not a measurement
    metrics = run_dir / "metrics.csv"
    while not metrics.exists() or len(metrics.read_text().splitlines()) < 3:
        assert time.time() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.2)


def _assert_no_orphans(marker: str) -> None:
    deadline = time.time() + 120  # a hang guard: workers notice a dead learner within a rollout
    while _marked_processes(marker) and time.time() < deadline:
        time.sleep(0.2)
    assert _marked_processes(marker) == []


@pytest.mark.parametrize("how", ["normal end", "ctrl-c", "learner killed"])
def test_no_orphan_processes(tmp_path, how):
    marker = uuid.uuid4().hex
    steps = 6000 if how == "normal end" else 100_000_000
    proc = _a3c(tmp_path / "r", "CartPole-v1", steps, marker)
    if how != "normal end":
        _wait_for_rows(proc, tmp_path / "r")
        assert len(_marked_processes(marker)) >= 3  # learner + 2 workers
        proc.send_signal(signal.SIGINT if how == "ctrl-c" else signal.SIGKILL)
    _, err = proc.communicate(timeout=HANG_GUARD_S)
    expected = {"normal end": 0, "ctrl-c": 130, "learner killed": -signal.SIGKILL}[how]
    assert proc.returncode == expected, err
    if how != "learner killed":
        assert "Traceback" not in err
    _assert_no_orphans(marker)


def test_a_worker_crash_fails_the_run_with_its_error_and_leaves_no_orphans(tmp_path):
    marker = uuid.uuid4().hex
    proc = _a3c(tmp_path / "r", "crash_env:CrashingCartPole-v0", 100_000, marker)
    _, err = proc.communicate(timeout=HANG_GUARD_S)
    assert proc.returncode == 2, err
    assert "a3c worker" in err and "the env broke (deliberately)" in err
    assert "Traceback" not in err.splitlines()[0]
    _assert_no_orphans(marker)


def test_a_nan_in_a_worker_stops_the_run_naming_it_and_keeps_the_last_checkpoint(tmp_path):
    marker = uuid.uuid4().hex
    run_dir = tmp_path / "r"
    proc = _a3c(run_dir, "crash_env:NanRewardCartPole-v0", 100_000, marker)
    _, err = proc.communicate(timeout=HANG_GUARD_S)
    assert proc.returncode == 2, err
    assert "non-finite" in err and "a3c worker" in err, err
    _assert_no_orphans(marker)


def test_an_a3c_run_resumes_from_its_checkpoint(tmp_path):
    run_dir = tmp_path / "r"
    first = _a3c(run_dir, "CartPole-v1", 4000, uuid.uuid4().hex)
    assert first.wait(120) == 0
    before = json.loads((run_dir / "summary.json").read_text())["steps"]
    assert before >= 4000
    first_rows = (run_dir / "metrics.csv").read_text().splitlines()
    environ = {**os.environ, "PYTHONPATH": str(TESTS)}
    resumed = subprocess.run(
        [sys.executable, "-m", "pgrad", "train", "--resume", str(run_dir), "--steps", "8000",
         "--no-progress"],
        capture_output=True, text=True, env=environ, timeout=HANG_GUARD_S,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    rows = (run_dir / "metrics.csv").read_text().splitlines()
    steps = [int(r.split(",")[0]) for r in rows[1:]]
    # One curve, continued: the first run's rows kept as they were, then later ones. (How many
    # rows the first run wrote depends on when its workers reported: maybe one, at its end.)
    assert rows[: len(first_rows)] == first_rows and len(rows) > len(first_rows)
    assert steps == sorted(steps) and steps[-1] > before
    assert json.loads((run_dir / "summary.json").read_text())["steps"] >= 8000


@pytest.mark.parametrize(
    ("setting", "message"),
    [({"nan_retries": 2}, "a3c does not support nan_retries (got 2)"),
     ({"device": "cuda"}, "device must be cpu"),
     ({"normalize_obs": True}, "does not support normalize_obs")],
)  # fmt: skip
def test_settings_a3c_cannot_honour_are_refused(setting, message):
    """nan_retries: going back to a checkpoint would need new workers and a re-shared
    optimizer state; A3C refuses it rather than crash at the first NaN."""
    from pgrad.config import ConfigError, build

    with pytest.raises(ConfigError) as error:
        build(A3CConfig, [setting], "a3c")
    assert message in str(error.value)
