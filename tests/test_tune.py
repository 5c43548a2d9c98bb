"""`pgrad tune`: valid search spaces, a study that writes best.yaml and resumes, pruning that
stops training, recovery from a SIGKILL, and one-line errors for bad input."""

import fcntl
import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from cli_runner import run_cli

from pgrad import search_spaces, tune
from pgrad.config import keys
from pgrad.errors import PgradError
from pgrad.search_spaces import Choice, Float
from pgrad.train import resolve, train

try:
    import optuna
except ImportError:  # pgrad[tune] not installed: the tests that need Optuna skip
    optuna = None
needs_optuna = pytest.mark.skipif(optuna is None, reason="needs pgrad[tune] (optuna)")

ENVS = {"sac": "Pendulum-v1"}
"""The env each algorithm's space is checked on (CartPole-v1 where not named)."""
TINY = {
    "learning_rate": Float(1e-4, 3e-3, log=True),
    "n_steps": Choice((16, 32)),
    "batch_size": Choice((128, 256), at_most=("n_steps", "n_envs")),
    "n_epochs": Choice((2, 4)),
}
"""A PPO space whose trials are quick (rollouts of 128 or 256 steps)."""
STEPS = 1500


@pytest.fixture
def tiny_space(monkeypatch):
    monkeypatch.setitem(search_spaces.SPACES, "ppo", TINY)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def states(out: Path) -> list[str]:
    study = optuna.load_study(study_name=tune.STUDY, storage=tune.storage_url(out))
    return [t.state.name for t in study.trials]


@needs_optuna
@pytest.mark.parametrize("algo", sorted(search_spaces.SPACES))
def test_every_sampled_config_is_valid(algo):
    from pgrad import algos

    env = ENVS.get(algo, "CartPole-v1")
    space = search_spaces.SPACES[algo]
    assert set(space) <= set(keys(algos.get(algo).config_cls)), set(space)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(100):
        trial = study.ask()
        params = tune.sample(trial, algo, env)
        assert set(params) == set(space)
        cfg = resolve(algo, env, config=params)  # what best.yaml gives `pgrad train --config`
        for key, dim in space.items():
            if isinstance(dim, Choice) and dim.at_most:
                bound = 1
                for k in dim.at_most:
                    bound *= getattr(cfg, k)
                assert getattr(cfg, key) <= bound
        study.tell(trial, 0.0)


def test_the_required_algorithms_have_spaces():
    assert {"ppo", "a2c", "sac", "reinforce_baseline"} <= set(search_spaces.SPACES)


@needs_optuna
def test_tune_writes_best_yaml_and_resumes_without_rerunning(tiny_space, tmp_path):
    out = tmp_path / "out"
    first = tune.tune("ppo", "CartPole-v1", trials=2, steps=STEPS, out=out)
    assert first.study.trials[0].state.name == "COMPLETE"  # none to compare it with
    assert first.study.trials[1].state.name in ("COMPLETE", "PRUNED")
    assert (out / "trials.png").stat().st_size > 0
    for t in first.study.trials:
        run = out / "trials" / f"trial-{t.number:04d}"
        assert (run / "summary.json").is_file() and list((run / "checkpoints").iterdir())
    assert sorted(first.study.trials[0].intermediate_values) == [300, 600, 900, 1200]
    best = yaml.safe_load((out / "best.yaml").read_text())
    assert best["steps"] == STEPS and set(best) == {*TINY, "steps"}
    assert best["batch_size"] <= best["n_steps"] * 8
    run = train("ppo", "CartPole-v1", steps=300, config=out / "best.yaml",
                run_dir=tmp_path / "retrain", eval_episodes=1)  # fmt: skip
    assert run.config["learning_rate"] == best["learning_rate"]

    with open(out / ".lock", "w") as lock:  # a tune running on OUT holds this lock
        fcntl.flock(lock, fcntl.LOCK_EX)
        with pytest.raises(PgradError, match="another pgrad tune is running on"):
            tune.tune("ppo", "CartPole-v1", trials=3, out=out)

    before = {t.number: t.datetime_complete for t in first.study.trials}
    again = tune.tune("ppo", "CartPole-v1", trials=3, out=out)  # steps and seed: the study's
    trials = again.study.trials
    assert len(trials) == 3 and all(t.state.name in ("COMPLETE", "PRUNED") for t in trials)
    assert {t.number: t.datetime_complete for t in trials[:2]} == before
    assert sorted(p.name for p in (out / "trials").iterdir()) == [
        "trial-0000", "trial-0001", "trial-0002"
    ]  # fmt: skip
    # Nothing left to do: a third run trains nothing and rewrites the outputs.
    assert len(tune.tune("ppo", "CartPole-v1", trials=3, out=out).study.trials) == 3


@needs_optuna
def test_a_pruned_trial_stops_training(tiny_space, monkeypatch, tmp_path):
    """The pruner says prune at the first evaluation of a 1M-step trial: only the callback's
    stop ends it early (a broken one would train for minutes, and fail)."""
    monkeypatch.setattr(
        tune, "_pruner", lambda setup, startup: optuna.pruners.ThresholdPruner(lower=1e9)
    )
    out = tmp_path / "out"
    handler = signal.getsignal(signal.SIGINT)
    tuned = tune.tune("ppo", "CartPole-v1", trials=1, steps=10**6, out=out, evaluations=1000)
    (trial,) = tuned.study.trials
    assert trial.state.name == "PRUNED" and trial.user_attrs["pruned_at"] == 1000
    summary = json.loads((out / "trials" / "trial-0000" / "summary.json").read_text())
    assert summary["interrupted"] == "callback" and summary["steps"] < 10**6
    assert tuned.best is None and (out / "trials.png").is_file()
    assert signal.getsignal(signal.SIGINT) is handler


@needs_optuna
def test_jobs_share_the_trials_between_processes(tmp_path):
    """Two workers (this process and a spawned one, which has the shipped search space:
    reinforce_baseline's trials are short at this budget) finish two trials between them."""
    out = tmp_path / "out"
    tuned = tune.tune("reinforce_baseline", "CartPole-v1", trials=2, steps=600, jobs=2, out=out)
    assert len(tune.finished(tuned.study)) == 2 and len(tuned.study.trials) == 2
    assert sorted(p.name for p in (out / "trials").iterdir()) == ["trial-0000", "trial-0001"]


class FakeTrial:
    def __init__(self, prune_after: int):
        self.reports: list[tuple[float, int]] = []
        self.prune_after = prune_after

    def report(self, value, step):
        self.reports.append((value, step))

    def should_prune(self):
        return len(self.reports) >= self.prune_after


def test_pruning_reports_at_nominal_steps_and_stops_at_the_first_prune(tmp_path):
    setup = tune.Setup("ppo", "CartPole-v1", 5000, 0, 1, 5, tmp_path)
    rows = [(1024, math.nan), (1100, 20.0), (2300, 30.0), (3100, 40.0), (5100, 50.0)]
    trial = FakeTrial(prune_after=99)
    pruning = tune.Pruning(trial, setup)
    assert all(pruning(step, {"eval_return": value}, None) for step, value in rows)
    assert trial.reports == [(20.0, 1000), (30.0, 2000), (40.0, 3000)]  # 5100: the objective's
    trial = FakeTrial(prune_after=2)
    pruning = tune.Pruning(trial, setup)
    assert [pruning(step, {"eval_return": value}, None) for step, value in rows[:3]] == [
        True, True, False
    ]  # fmt: skip
    assert trial.reports == [(20.0, 1000), (30.0, 2000)] and pruning.pruned_at == 2000


def test_the_evaluation_that_spends_the_budget_is_never_intermediate(tmp_path):
    """1000 steps, 3 evaluations: interval 333, so the last nominal step is 999 < 1000. The
    update that passes 999 may also pass 1000 (a row at 1114): that evaluation is the
    objective's, so it is not reported and cannot prune the finished trial."""
    setup = tune.Setup("ppo", "CartPole-v1", 1000, 0, 1, 3, tmp_path)
    trial = FakeTrial(prune_after=1)
    pruning = tune.Pruning(trial, setup)
    assert pruning(1114, {"eval_return": 22.0}, None)
    assert trial.reports == [] and pruning.pruned_at is None
    assert not pruning(745, {"eval_return": 22.0}, None)  # an intermediate one still prunes
    assert trial.reports == [(22.0, 666)]


BLOCK = r"""
import sys, threading
from pgrad import runs, search_spaces
from pgrad.search_spaces import Choice, Float

search_spaces.SPACES["ppo"] = {
    "learning_rate": Float(1e-4, 3e-3, log=True),
    "n_steps": Choice((16, 32)),
    "batch_size": Choice((128, 256), at_most=("n_steps", "n_envs")),
    "n_epochs": Choice((2, 4)),
}
save = runs.save_checkpoint


def save_and_hang(*args, **kwargs):
    save(*args, **kwargs)
    threading.Event().wait()  # the trial stays RUNNING until the test kills this process


runs.save_checkpoint = save_and_hang
sys.argv = ["pgrad", *sys.argv[1:]]
from pgrad.cli import main
main()
"""


@needs_optuna
def test_a_killed_tune_resumes_and_finishes(tiny_space, tmp_path):
    out = tmp_path / "out"
    args = ["tune", "ppo", "--env", "CartPole-v1", "--trials", "2", "--steps", str(STEPS),
            "--out", str(out)]  # fmt: skip
    process = subprocess.Popen([sys.executable, "-c", BLOCK, *args], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300  # a failsafe only: the process hangs until killed
    checkpoints = out / "trials" / "trial-0000" / "checkpoints"
    # Wait for the hang: trial 0 RUNNING in the database, its run's checkpoint written.
    while "RUNNING" not in db_states(out / "study.db") or not list(checkpoints.glob("*.pt")):
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline
        time.sleep(0.1)
    process.send_signal(signal.SIGKILL)
    process.wait()
    process.stderr.close()
    assert states(out) == ["RUNNING"]

    tuned = tune.tune("ppo", "CartPole-v1", trials=2, steps=STEPS, out=out)
    trials = tuned.study.trials
    assert trials[0].state.name == "FAIL"
    assert len(tune.finished(tuned.study)) == 2 and len(trials) == 3
    assert trials[1].user_attrs["retry_of"] == 0 and trials[1].params == trials[0].params
    assert (out / "best.yaml").is_file()


def db_states(db: Path) -> list[str]:
    """Trial states straight from the SQLite file (as another process sees them)."""
    if not db.is_file():
        return []
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as connection:
            return [row[0] for row in connection.execute("SELECT state FROM trials")]
    except sqlite3.OperationalError:  # the tables are still being created
        return []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ppo2"], "unknown algorithm 'ppo2'"),
        (["ppo", "--env", "CartPol-v1"], "unknown env id 'CartPol-v1'"),
        (["ppo", "--trials", "0"], "--trials must be >= 1, got 0"),
        (["ppo", "--steps", "0"], "--steps must be >= 1, got 0"),
        (["ppo", "--jobs", "-2"], "--jobs must be >= 1, got -2"),
        (["reinforce"], "no search space for 'reinforce'"),
        (["ppo", "--seed", "-1"], "seed must be >= 0"),
    ],
)
@needs_optuna
def test_bad_input_is_one_line_and_writes_nothing(monkeypatch, capsys, tmp_path, args, message):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(monkeypatch, capsys, "tune", *args, "--out", "out")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
    assert not (tmp_path / "out").exists() and not (tmp_path / "runs").exists()


@needs_optuna
def test_an_existing_out_must_be_the_same_tune(monkeypatch, capsys, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    code, _, err = run_cli(monkeypatch, capsys, "tune", "ppo", "--out", str(other))
    assert code == 2 and "is not empty and holds no study.db" in err
    study = optuna.create_study(study_name=tune.STUDY, storage=tune.storage_url(tmp_path))
    for key, value in {"algo": "a2c", "env": "CartPole-v1", "steps": 1000, "seed": 0,
                       "evaluations": 5}.items():  # fmt: skip
        study.set_user_attr(key, value)
    code, _, err = run_cli(monkeypatch, capsys, "tune", "ppo", "--out", str(tmp_path))
    assert code == 2 and "holds a tune with algo 'a2c'" in err and "algo 'ppo' differs" in err
    assert sorted(os.listdir(tmp_path)) == ["other", "study.db"]


def test_without_optuna_the_error_names_the_extra(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna raises ImportError
    code, _, err = run_cli(monkeypatch, capsys, "tune", "ppo", "--out", str(tmp_path / "o"))
    assert code == 2 and err.strip() == "error: pgrad tune needs Optuna: pip install 'pgrad[tune]'"
    assert not (tmp_path / "o").exists()
