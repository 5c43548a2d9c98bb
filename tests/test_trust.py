"""Runs that fail loudly: NaN guards, the watchdog's warnings, clean stops on signals."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from cli_runner import HANG_GUARD_S
from hypothesis import given, settings
from hypothesis import strategies as st
from killpoints import POINTS, run_killed

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
    import pgrad.fast.backprop as backprop

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


@pytest.mark.parametrize(("factor", "after"), [({}, 5e-4), ({"nan_lr_factor": 0.1}, 1e-4)])
def test_nan_retries_go_back_to_the_checkpoint_with_a_smaller_learning_rate(
    tmp_path, monkeypatch, factor, after
):
    import pgrad.fast.backprop as backprop

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
        anneal_lr=False, log_every=256, **factor,
    )  # fmt: skip
    (warning,) = [w for w in run.summary["warnings"] if "non-finite" in w]
    assert "non-finite value_loss" in warning
    assert f"learning_rate {after:g} (retry 1 of 1)" in warning
    back_to = int(warning.split("checkpoint at step ")[1].split(" ")[0].replace(",", ""))
    rows = run.metrics()
    assert {r["learning_rate"] for r in rows if r["step"] <= back_to} == {1e-3}
    later = [r["learning_rate"] for r in rows if r["step"] > back_to]
    assert later and all(lr == pytest.approx(after) for lr in later)
    steps = [r["step"] for r in rows]
    assert steps == sorted(set(steps))  # rows after the checkpoint were dropped, not repeated

    # A resume takes the run as configured: other settings are refused, not silently dropped.
    with pytest.raises(pgrad.PgradError, match="takes only steps and device, not seed, lear"):
        pgrad.train(resume=run.path, steps=4000, seed=1, learning_rate=1e-2)
    # Resumed, the run keeps the lowered rate (PPO sets it from the config every update) ...
    resumed = pgrad.train(resume=run.path, steps=4000)
    rows = [r for r in resumed.metrics() if r["step"] > 3000]
    assert rows and all(r["learning_rate"] == pytest.approx(after) for r in rows)
    # ... and the retries it has used: the next NaN stops it.
    calls["n"] = 60
    with pytest.raises(NonFiniteError, match="the run stopped"):
        pgrad.train(resume=run.path, steps=6000)


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
    deadline = time.time() + HANG_GUARD_S  # a hang guard, not a measurement
    while not (run_dir / "metrics.csv").exists() or (run_dir / "metrics.csv").stat().st_size < 300:
        assert time.time() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    os.kill(proc.pid, sig)
    out, err = proc.communicate(timeout=HANG_GUARD_S)
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


def _pgrad(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pgrad", "train", *args, "--no-progress"],
        capture_output=True, text=True, timeout=HANG_GUARD_S,
    )  # fmt: skip


def _killed(point: str, nth: int, *args: str) -> None:
    """``pgrad train ARGS`` SIGKILLed at ``point`` of its ``nth`` checkpoint write."""
    proc = run_killed(point, nth, "train", *args, "--no-progress")
    assert proc.returncode == -signal.SIGKILL, proc.stderr


def _args(algo: str) -> list[str]:
    return [algo, "--env", "CartPole-v1", "--steps", "6000", "--seed", "3",
            "--set", "checkpoint_every=1000", "--set", "log_every=400",
            "--set", "eval_every=3000", "--set", "eval_episodes=3",
            "--set", "keep_checkpoints=10"]  # fmt: skip


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict[str, Path]:
    """The reference run of each algorithm, never killed."""
    done = {}
    for algo in ("ppo", "a2c"):
        run_dir = tmp_path_factory.mktemp(algo) / "reference"
        proc = _pgrad(*_args(algo), "--run-dir", str(run_dir))
        assert proc.returncode == 0, proc.stderr
        done[algo] = run_dir
    return done


def _assert_logs_like(run_dir: Path, reference: Path) -> None:
    assert (run_dir / "metrics.csv").read_text() == (reference / "metrics.csv").read_text()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert (
        summary["mean_return"]
        == json.loads((reference / "summary.json").read_text())["mean_return"]
    )
    assert not list((run_dir / "checkpoints").glob(".*.tmp"))  # stale temp files cleaned


@pytest.mark.parametrize("point", POINTS)
def test_sigkill_at_every_point_of_a_checkpoint_write_keeps_the_latest_loadable(
    tmp_path, uninterrupted, point
):
    """Killed at each point of the 3rd checkpoint write (a test hook, not a timer): the latest
    checkpoint is the 2nd, or the 3rd once renamed into place, and loads; a resumed run then
    logs exactly what the uninterrupted one logged."""
    reference = uninterrupted["ppo"]
    written = [load_checkpoint(p)["step"] for p in checkpoints(reference)]
    run_dir = tmp_path / "killed"
    _killed(point, 3, *_args("ppo"), "--run-dir", str(run_dir))
    torn = list((run_dir / "checkpoints").glob(".step-*.tmp"))
    assert bool(torn) == (point in ("mid-write", "before-fsync", "before-rename"))
    latest = written[2] if point == "after-rename" else written[1]
    assert [load_checkpoint(p)["step"] for p in checkpoints(run_dir)] == written[: 3 if
        point == "after-rename" else 2]  # fmt: skip
    assert load(run_dir).step == latest
    resumed = _pgrad("--resume", str(run_dir))
    assert resumed.returncode == 0, resumed.stderr
    _assert_logs_like(run_dir, reference)


@pytest.mark.parametrize("algo", ["ppo", "a2c"])
def test_a_run_killed_twice_between_checkpoints_and_resumed_logs_what_an_uninterrupted_run_logs(
    tmp_path, uninterrupted, algo
):
    """Killed as its 3rd checkpoint is due (rows logged since the 2nd are lost and replayed),
    resumed, killed again mid-write of the resumed run's 2nd checkpoint, resumed to the end."""
    run_dir = tmp_path / "killed"
    _killed("before", 3, *_args(algo), "--run-dir", str(run_dir))
    metrics = (run_dir / "metrics.csv").read_text()
    assert len(metrics.splitlines()) > 1 + 2 * 1000 // 400  # rows logged after the 2nd checkpoint
    proc = run_killed("mid-write", 2, "train", "--resume", str(run_dir), "--no-progress")
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    resumed = _pgrad("--resume", str(run_dir))
    assert resumed.returncode == 0, resumed.stderr
    _assert_logs_like(run_dir, uninterrupted[algo])


KILLED_IN_FIRST_UPDATE = """
import os, signal, sys
from pgrad.algos.ppo import PPO
from pgrad.cli import main

PPO.iterate = lambda self: os.kill(os.getpid(), signal.SIGKILL)
sys.argv = ["pgrad", "train", "--resume", sys.argv[1], "--no-progress"]
main()
"""


def test_a_resume_killed_before_its_first_row_keeps_the_rows_up_to_its_checkpoint(
    tmp_path, uninterrupted
):
    """A resume cuts metrics.csv back to the checkpoint's step; killed in its first update
    (before any new row), the file must still hold every row up to that step (it used to be
    left empty), and resuming again still logs what the uninterrupted run logged."""
    run_dir = tmp_path / "killed"
    _killed("before", 3, *_args("ppo"), "--run-dir", str(run_dir))
    header, *rows = (run_dir / "metrics.csv").read_text().splitlines()
    step = load(run_dir).step
    assert any(int(r.split(",")[0]) > step for r in rows)  # rows the resume must drop
    proc = subprocess.run(
        [sys.executable, "-c", KILLED_IN_FIRST_UPDATE, str(run_dir)],
        capture_output=True, text=True, timeout=HANG_GUARD_S,
    )  # fmt: skip
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    kept = [r for r in rows if int(r.split(",")[0]) <= step]
    assert len(kept) >= 2
    assert (run_dir / "metrics.csv").read_text().splitlines() == [header, *kept]
    resumed = _pgrad("--resume", str(run_dir))
    assert resumed.returncode == 0, resumed.stderr
    _assert_logs_like(run_dir, uninterrupted["ppo"])


def test_watchdog_leaves_a_temperature_controlled_entropy_alone():
    """SAC steers its entropy down to a (negative) target on purpose: no collapse warning."""
    dog = Watchdog(total_steps=100_000)
    dog.update(1000, {"entropy": 0.9, "alpha": 1.0})
    assert dog.update(2000, {"entropy": -0.6, "alpha": 0.3}) == []
    plain = Watchdog(total_steps=100_000)
    plain.update(1000, {"entropy": 0.9})
    assert plain.update(2000, {"entropy": 0.01})  # without a temperature it does fire
