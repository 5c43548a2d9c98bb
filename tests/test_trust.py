"""Runs that fail loudly: NaN guards, the watchdog's warnings, clean stops on signals."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import pgrad
from pgrad import algos
from pgrad.agent import load
from pgrad.config import ConfigError, build, keys, parse_set
from pgrad.errors import NonFiniteError
from pgrad.runs import checkpoints, load_checkpoint
from pgrad.watchdog import Watchdog


def test_a_nan_in_the_loss_stops_the_run_naming_it_and_keeps_the_last_checkpoint(
    tmp_path, monkeypatch
):
    import pgrad.backprop as backprop

    calls = {"n": 0}
    real_value_loss = backprop._value_loss  # PPO's value loss and its gradient

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        loss, grad = real_value_loss(*args, **kwargs)
        return (loss * float("nan") if calls["n"] > 60 else loss), grad  # from the 4th update on

    monkeypatch.setattr(backprop, "_value_loss", poisoned)
    run_dir = tmp_path / "r"
    with pytest.raises(NonFiniteError, match=r"non-finite value_loss .* update 4 \(after step "):
        pgrad.train(
            "ppo", "CartPole-v1", steps=20_000, seed=0, run_dir=run_dir, checkpoint_every=256,
            n_envs=8, n_steps=32, n_epochs=20, batch_size=256,
        )  # fmt: skip
    last = checkpoints(run_dir)[-1]
    state = load_checkpoint(last)  # intact and loadable
    assert 3 * 256 - 64 <= state["step"] <= 3 * 256  # after update 3 (autoreset steps uncounted)
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    assert load(run_dir).evaluate(episodes=2).shape == (2,)


def test_nan_retries_go_back_to_the_checkpoint_with_a_smaller_learning_rate(tmp_path, monkeypatch):
    import pgrad.backprop as backprop

    calls = {"n": 0}
    real_value_loss = backprop._value_loss

    def poisoned_once(*args, **kwargs):
        calls["n"] += 1
        loss, grad = real_value_loss(*args, **kwargs)
        return (loss * float("nan") if calls["n"] == 61 else loss), grad  # update 4, minibatch 1

    monkeypatch.setattr(backprop, "_value_loss", poisoned_once)
    run = pgrad.train(
        "ppo", "CartPole-v1", steps=3000, seed=0, run_dir=tmp_path / "r", checkpoint_every=256,
        n_envs=8, n_steps=32, n_epochs=20, batch_size=256, learning_rate=1e-3, nan_retries=1,
        anneal_lr=False, log_every=256,
    )  # fmt: skip
    (warning,) = [w for w in run.summary["warnings"] if "non-finite" in w]
    assert "non-finite value_loss" in warning and "learning_rate 0.0005 (retry 1 of 1)" in warning
    back_to = int(warning.split("checkpoint at step ")[1].split(" ")[0].replace(",", ""))
    rows = run.metrics()
    assert {r["learning_rate"] for r in rows if r["step"] <= back_to} == {1e-3}
    assert {r["learning_rate"] for r in rows if r["step"] > back_to} == {5e-4}
    steps = [r["step"] for r in rows]
    assert steps == sorted(set(steps))  # rows after the checkpoint were dropped, not repeated


def test_a_flipped_policy_gradient_sign_triggers_the_falling_returns_warning(tmp_path, monkeypatch):
    import pgrad.algos.reinforce as reinforce

    def run(name):
        return pgrad.train(
            "reinforce", "CartPole-v1", steps=25_000, seed=0, run_dir=tmp_path / name,
            log_every=1000, eval_episodes=2,
        )  # fmt: skip

    healthy = run("healthy")
    assert not any("falling returns" in w for w in healthy.summary["warnings"])
    real = reinforce.policy_gradient_loss
    monkeypatch.setattr(reinforce, "policy_gradient_loss", lambda lp, adv: -real(lp, adv))
    flipped = run("flipped")
    assert any("falling returns" in w for w in flipped.summary["warnings"])
    assert "falling returns" in (tmp_path / "flipped" / "warnings.txt").read_text()


def test_watchdog_flags_value_loss_explosion_and_entropy_collapse_once():
    dog = Watchdog(total_steps=100_000)
    assert dog.update(1000, {"entropy": 0.69, "value_loss": 1.0}) == []
    for step in range(2000, 7000, 1000):
        assert dog.update(step, {"entropy": 0.6, "value_loss": 1.2}) == []
    assert dog.update(6500, {"entropy": 0.6, "value_loss": 500.0}) == []  # 400x: a scale shift
    warnings = dog.update(7000, {"entropy": 0.01, "value_loss": 5000.0})
    assert len(warnings) == 2
    assert any("entropy collapse" in w for w in warnings)
    assert any("value-loss explosion" in w for w in warnings)
    assert dog.update(8000, {"entropy": 0.01, "value_loss": 9000.0}) == []  # once each
    late = Watchdog(total_steps=10_000)
    late.update(1000, {"entropy": 0.69})
    assert late.update(9000, {"entropy": 0.01}) == []  # late in training: allowed to converge


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_saves_a_final_checkpoint_and_exits_cleanly(tmp_path, sig):
    run_dir = tmp_path / "r"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pgrad", "train", "a2c", "--env", "CartPole-v1",
         "--steps", "100000000", "--run-dir", str(run_dir), "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.time() + 60
    while not (run_dir / "metrics.csv").exists() or (run_dir / "metrics.csv").stat().st_size < 300:
        assert time.time() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    os.kill(proc.pid, sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == (130 if sig == signal.SIGINT else 143), err
    assert "Traceback" not in err
    assert f"interrupted by {signal.Signals(sig).name}" in out
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["interrupted"] == signal.Signals(sig).name
    assert load(run_dir).step == summary["steps"] > 0


VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.lists(st.one_of(st.integers(-5, 300), st.text(max_size=4), st.floats()), max_size=4),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)


@settings(max_examples=300, deadline=None)
@given(
    algo=st.sampled_from(list(algos.ALGOS)),
    data=st.data(),
)
def test_config_parser_gives_a_valid_config_or_a_clean_error(algo, data):
    """Random keys (real ones and junk) with random values of every YAML-ish type, through
    the same path as `--config`/`--set`: a ConfigError or a config that passes its own checks."""
    spec = algos.get(algo)
    real_keys = list(keys(spec.config_cls))
    key_strategy = st.one_of(st.sampled_from(real_keys), st.text(max_size=10))
    layer = data.draw(st.dictionaries(key_strategy, VALUES, max_size=4))
    sets = data.draw(st.lists(st.text(max_size=20), max_size=2))
    try:
        layers = [layer, dict(parse_set(item) for item in sets)]
        config = build(spec.config_cls, layers, algo)
    except ConfigError as e:
        assert "\n" not in str(e)
        return
    config.check()
    assert config.learning_rate > 0 and 0 <= config.gamma <= 1 and config.n_envs >= 1


def _pgrad(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pgrad", "train", *args, "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


@pytest.mark.parametrize("algo", ["ppo", "a2c"])
def test_a_run_killed_at_random_points_and_resumed_logs_what_an_uninterrupted_run_logs(
    tmp_path, algo
):
    args = [algo, "--env", "CartPole-v1", "--steps", "30000", "--seed", "3",
            "--set", "checkpoint_every=1500", "--set", "log_every=1000",
            "--set", "eval_every=5000", "--set", "eval_episodes=3"]  # fmt: skip
    reference = _pgrad(*args, "--run-dir", str(tmp_path / "reference"))
    _, err = reference.communicate(timeout=300)
    assert reference.returncode == 0, err
    run_dir = tmp_path / "killed"
    rng = np.random.default_rng(0)
    proc = _pgrad(*args, "--run-dir", str(run_dir))
    kills = 0
    for _ in range(2):  # SIGKILL twice at random moments after a checkpoint, resume each time
        deadline = time.time() + 120
        while not checkpoints(run_dir) and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 1.5))
        if proc.poll() is None:
            proc.kill()
            kills += 1
        proc.communicate()
        proc = _pgrad("--resume", str(run_dir))
    _out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert kills >= 1
    expected = (tmp_path / "reference" / "metrics.csv").read_text()
    assert (run_dir / "metrics.csv").read_text() == expected
    summary = json.loads((run_dir / "summary.json").read_text())
    reference_summary = json.loads((tmp_path / "reference" / "summary.json").read_text())
    assert summary["mean_return"] == reference_summary["mean_return"]


def test_sigkill_during_checkpoint_writes_never_leaves_the_latest_unloadable(tmp_path):
    sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
    from crash_safety import kill_loop

    _, torn, failures = kill_loop(tmp_path / "run", kills=10, seed=1)
    assert torn >= 2  # the kills did land inside writes
    assert failures == 0


def test_watchdog_leaves_a_temperature_controlled_entropy_alone():
    """SAC steers its entropy down to a (negative) target on purpose: no collapse warning."""
    dog = Watchdog(total_steps=100_000)
    dog.update(1000, {"entropy": 0.9, "alpha": 1.0})
    assert dog.update(2000, {"entropy": -0.6, "alpha": 0.3}) == []
    plain = Watchdog(total_steps=100_000)
    plain.update(1000, {"entropy": 0.9})
    assert plain.update(2000, {"entropy": 0.01})  # without a temperature it does fire
