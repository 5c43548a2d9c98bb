"""``pgrad tune``: search an algorithm's hyperparameters with Optuna, as rl-zoo's ``--optimize``.

A TPE sampler (seeded) draws each trial's config from ``search_spaces.SPACES``; a median pruner
stops trials whose intermediate evaluations fall below the median of finished trials at the
same step. The objective is the final evaluation's mean return (``summary.json``).

Every trial is an ordinary ``pgrad.train`` run in ``OUT/trials/trial-NNNN`` with
``eval_every = steps // evaluations``, so ``pgrad eval``, ``report`` and ``train --resume``
work on it. Pruning hooks into training through ``train``'s ``callback`` (``Pruning``): each
trial trains with its whole budget (training in chunks with ``train(resume=..., steps=...)``
would not be the same run: the budget also sets ``anneal_lr``'s schedule and SAC's buffer
size), and each intermediate evaluation is reported to the trial at its nominal step (the
multiple of ``eval_every`` it is due at, so trials with different rollout sizes compare at
the same steps). When the pruner says prune, the callback stops the run after that update,
with a final checkpoint and an ``interrupted`` summary, and the trial is PRUNED. Which trials
are pruned, and where, does not depend on timing (with ``jobs=1``).

Resume: the study lives in ``OUT/study.db`` (SQLite, ``load_if_exists``). A lock on
``OUT/.lock`` keeps a second ``pgrad tune`` off the same OUT, so any trial still RUNNING when
a tune starts belongs to a process that died: it is marked FAIL, and its params are enqueued
once as a new trial (``retry_of``). Then the study runs until ``trials`` trials are complete
or pruned. The sampler's seed is ``seed`` mixed with the number of trials so far, so a resumed
tune does not replay the first tune's draws.

``jobs > 1`` runs trials in that many processes (spawned, each with a share of the trials),
not threads: ``train`` seeds the process-wide RNGs, sets process-wide thread counts and
catches SIGINT only in the main thread. A worker whose parent died exits at its next logged row.
Concurrent trials see each other's results in whatever order they finish, so a tune with
``jobs > 1`` is not reproducible trial for trial.

This module sits one layer above ``pgrad.train`` (import-linter), beside ``report`` and
``lab``: the modules of ``train``'s layer are independent, and ``tune`` drives ``train``.
"""

from __future__ import annotations

import fcntl
import math
import multiprocessing
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from rich.console import Console
from rich.table import Table

from pgrad import algos, runs, search_spaces
from pgrad.config import to_dict
from pgrad.errors import NonFiniteError, PgradError
from pgrad.plot import pyplot, save
from pgrad.search_spaces import Choice, Dimension, Float
from pgrad.train import resolve, train

EVALUATIONS = 5
"""Evaluations per trial (each one a point the pruner may stop the trial at)."""
EVAL_EPISODES = 5
STUDY = "pgrad"
console = Console()


def require_optuna() -> Any:
    """The ``optuna`` module, or a one-line error saying how to install it."""
    try:
        import optuna
    except ImportError:
        raise PgradError("pgrad tune needs Optuna: pip install 'pgrad[tune]'") from None
    return optuna


SETTINGS = ("algo", "env", "steps", "seed", "evaluations")
"""What a study is tuned for (its user attributes): a resumed tune must match them."""


@dataclass(frozen=True)
class Setup:
    """A checked tune: what every trial trains, and where the study lives."""

    algo: str
    env: str
    steps: int
    seed: int
    trials: int
    evaluations: int
    out: Path

    @property
    def interval(self) -> int:
        """Steps between a trial's evaluations (``eval_every``)."""
        return max(1, self.steps // self.evaluations)


def storage_url(out: Path) -> str:
    return f"sqlite:///{(out / 'study.db').resolve()}"


def check(
    algo: str,
    env: str,
    trials: int,
    steps: int | None,
    jobs: int,
    out: str | Path | None,
    seed: int | None,
    evaluations: int = EVALUATIONS,
) -> Setup:
    """Every argument checked, before anything is written; a one-line ``PgradError`` if bad.
    ``steps`` and ``seed`` left out are the study's (resuming) or the config's defaults."""
    optuna = require_optuna()
    numbers = {"trials": trials, "steps": steps, "jobs": jobs, "evaluations": evaluations}
    for name, value in numbers.items():
        if value is not None and value < 1:
            raise PgradError(f"--{name} must be >= 1, got {value}")
    algos.get(algo)
    if algo not in search_spaces.SPACES:
        known = ", ".join(search_spaces.SPACES)
        raise PgradError(f"no search space for {algo!r} (pgrad/search_spaces.py has {known})")
    resolve(algo, env, steps, seed)  # the env id, and the steps/seed ranges
    if out is None:
        out = Path("runs") / f"tune-{algo}-{re.sub(r'[/:]', '-', env)}"
    out = Path(out)
    db = out / "study.db"
    if out.exists() and not out.is_dir():
        raise PgradError(f"--out {str(out)!r} is a file")
    if out.is_dir() and any(p.name != ".lock" for p in out.iterdir()) and not db.is_file():
        raise PgradError(f"--out {str(out)!r} is not empty and holds no study.db; choose another")
    if db.is_file():
        try:
            stored = optuna.load_study(study_name=STUDY, storage=storage_url(out)).user_attrs
        except Exception as e:  # sqlalchemy's and optuna's errors for a foreign file
            raise PgradError(
                f"{str(db)!r} is not a pgrad tune study ({type(e).__name__})"
            ) from None
        given = {"algo": algo, "env": env, "steps": steps, "seed": seed, "evaluations": evaluations}
        for key, value in given.items():
            if value is not None and value != stored.get(key):
                settings = ", ".join(f"{k} {stored.get(k)!r}" for k in SETTINGS)
                raise PgradError(
                    f"{str(out)!r} holds a tune with {settings}; {key} {value!r} differs "
                    "(choose another --out)"
                )
        steps, seed = stored["steps"], stored["seed"]
    cfg = resolve(algo, env, steps, seed)
    return Setup(algo, env, cfg.steps, cfg.seed, trials, evaluations, out)


def suggest(trial: Any, key: str, dim: Dimension) -> Any:
    """One value of ``dim`` drawn for ``trial``."""
    if isinstance(dim, Float):
        return trial.suggest_float(key, dim.low, dim.high, log=dim.log)
    if isinstance(dim, Choice):
        return trial.suggest_categorical(key, list(dim.values))
    return trial.suggest_int(key, dim.low, dim.high, log=dim.log)


def sample(
    trial: Any, algo: str, env: str, steps: int | None = None, seed: int | None = None
) -> dict[str, Any]:
    """The config keys ``trial`` draws from ``algo``'s search space, with ``at_most`` bounds
    applied, as the resolved config holds them (a valid config: ``resolve`` checks it)."""
    space = search_spaces.SPACES[algo]
    params = {key: suggest(trial, key, dim) for key, dim in space.items()}
    cfg = resolve(algo, env, steps, seed, config=params)
    for key, dim in space.items():
        if not isinstance(dim, Choice) or not dim.at_most or params[key] is None:
            continue
        bound = math.prod(getattr(cfg, k) for k in dim.at_most)
        if params[key] > bound:
            within = [v for v in dim.values if v is not None and v <= bound]
            params[key] = max(within, default=bound)
    settings = to_dict(resolve(algo, env, steps, seed, config=params))
    return {key: settings[key] for key in space}


class Pruning:
    """``train``'s callback for one trial: reports each intermediate evaluation to the trial at
    its nominal step, and stops the run (returns False) once the pruner says prune. A trial in a
    worker process whose tune died exits at its next logged row."""

    def __init__(self, trial: Any, setup: Setup, parent: int | None = None):
        self.trial, self.setup, self.parent = trial, setup, parent
        self.pruned_at: int | None = None

    def __call__(self, step: int, row: dict[str, float], model: object) -> bool:
        if self.parent is not None and os.getppid() != self.parent:
            os._exit(1)
        value = row.get("eval_return", math.nan)
        nominal = step // self.setup.interval * self.setup.interval
        if math.isnan(value) or nominal == 0 or step >= self.setup.steps:
            # no evaluation, or the last one (the update that passes the last nominal step
            # may also spend the budget): the objective's, not intermediate
            return True
        self.trial.report(value, nominal)
        if self.trial.should_prune():
            self.pruned_at = nominal
            return False
        return True


def objective(setup: Setup, trial: Any, parent: int | None = None) -> float:
    """Train one trial's config; its final evaluation's mean return (or ``TrialPruned``)."""
    optuna = require_optuna()
    params = sample(trial, setup.algo, setup.env, setup.steps, setup.seed)
    trial.set_user_attr("config", params)
    run_dir = setup.out / "trials" / f"trial-{trial.number:04d}"
    pruning = Pruning(trial, setup, parent)
    try:
        run = train(setup.algo, setup.env, setup.steps, setup.seed, config=params,
                    run_dir=run_dir, callback=pruning, eval_every=setup.interval,
                    eval_episodes=EVAL_EPISODES)  # fmt: skip
    except NonFiniteError as e:  # these hyperparameters diverged
        trial.set_user_attr("error", str(e))
        raise optuna.TrialPruned(str(e)) from None
    if pruning.pruned_at is not None:
        trial.set_user_attr("pruned_at", pruning.pruned_at)
        raise optuna.TrialPruned(f"pruned at step {pruning.pruned_at}")
    summary = run.summary
    if "interrupted" in summary:  # Ctrl-C or SIGTERM, not the pruner: stop the tune
        raise KeyboardInterrupt
    return float(summary["mean_return"])


def open_study(setup: Setup, sampler_seed: int | None = None) -> Any:
    """The study in ``OUT/study.db`` (created with the tune's settings if new)."""
    optuna = require_optuna()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # pgrad prints a line per trial
    startup = max(1, min(10, setup.trials // 4))
    storage = optuna.storages.RDBStorage(
        storage_url(setup.out), engine_kwargs={"connect_args": {"timeout": 60}}
    )
    study = optuna.create_study(
        storage=storage,
        study_name=STUDY,
        direction="maximize",
        load_if_exists=True,
        sampler=optuna.samplers.TPESampler(n_startup_trials=startup, seed=sampler_seed),
        pruner=_pruner(setup, startup),
    )
    if not study.user_attrs:
        for key in SETTINGS:
            study.set_user_attr(key, getattr(setup, key))
    return study


def _pruner(setup: Setup, startup: int) -> Any:
    """Median pruning from the second evaluation on, once ``startup`` trials are complete."""
    optuna = require_optuna()
    return optuna.pruners.MedianPruner(n_startup_trials=startup, n_warmup_steps=2 * setup.interval)


def work(setup: Setup, n_trials: int, sampler_seed: int, parent: int | None = None) -> None:
    """Run ``n_trials`` trials of the study (one worker; ``parent``: the tune's pid, if a
    separate process)."""
    study = open_study(setup, sampler_seed)
    study.optimize(lambda t: objective(setup, t, parent), n_trials=n_trials, callbacks=[announce])


def announce(study: Any, trial: Any) -> None:
    """One line per finished trial."""
    state = trial.state.name.lower()
    value = "" if trial.value is None else f", return {trial.value:.1f}"
    at = f" at step {trial.user_attrs['pruned_at']:,}" if "pruned_at" in trial.user_attrs else ""
    console.print(f"trial {trial.number}: {state}{at}{value}")


def recover(study: Any) -> None:
    """Mark trials left RUNNING by a dead process FAIL, and enqueue each failed trial's params
    once more (a retry is not retried)."""
    optuna = require_optuna()
    state = optuna.trial.TrialState
    for trial in study.get_trials(deepcopy=False, states=(state.RUNNING,)):
        study.tell(trial.number, state=state.FAIL)
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    for trial in trials:
        if (
            trial.state == state.FAIL
            and trial.params
            and trial.number not in retried
            and "retry_of" not in trial.user_attrs
        ):
            study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})


def finished(study: Any) -> list[Any]:
    """The complete and pruned trials."""
    state = require_optuna().trial.TrialState
    return study.get_trials(deepcopy=False, states=(state.COMPLETE, state.PRUNED))


@dataclass
class Tuned:
    """A finished tune: its study and the files written (``best``: None if no trial completed)."""

    study: Any
    best: Path | None
    plot: Path


def tune(
    algo: str,
    env: str = "CartPole-v1",
    trials: int = 20,
    steps: int | None = None,
    jobs: int = 1,
    out: str | Path | None = None,
    seed: int | None = None,
    evaluations: int = EVALUATIONS,
) -> Tuned:
    """Tune ``algo`` on ``env`` until ``trials`` trials are complete or pruned (resuming the
    study in ``out`` if there is one); write ``best.yaml`` and ``trials.png`` there."""
    setup = check(algo, env, trials, steps, jobs, out, seed, evaluations)
    setup.out.mkdir(parents=True, exist_ok=True)
    with open(setup.out / ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PgradError(f"another pgrad tune is running on {str(setup.out)!r}") from None
        study = open_study(setup)
        recover(study)
        remaining = setup.trials - len(finished(study))
        if remaining > 0:
            _run(setup, remaining, min(jobs, remaining), len(study.trials))
        study = open_study(setup)
        return Tuned(study, write_best(study, setup), plot_trials(study, setup))


def _run(setup: Setup, remaining: int, jobs: int, so_far: int) -> None:
    """``remaining`` trials over ``jobs`` workers: this process and ``jobs - 1`` spawned ones."""
    shares = [remaining // jobs + (i < remaining % jobs) for i in range(jobs)]
    seeds = np.random.SeedSequence([setup.seed, so_far]).generate_state(jobs).tolist()
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=work, args=(setup, shares[i], seeds[i], os.getpid()))
        for i in range(1, jobs)
    ]
    for process in workers:
        process.start()
    try:
        work(setup, shares[0], seeds[0])
    finally:
        for process in workers:
            process.join()
    failed = [p.exitcode for p in workers if p.exitcode]
    if failed:
        raise PgradError(f"a tune worker exited with status {failed[0]}; rerun to continue")


def write_best(study: Any, setup: Setup) -> Path | None:
    """``OUT/best.yaml``: the best complete trial's keys, and the steps it was tuned with."""
    state = require_optuna().trial.TrialState
    if not study.get_trials(deepcopy=False, states=(state.COMPLETE,)):
        return None
    best = study.best_trial
    path = setup.out / "best.yaml"
    header = (
        f"# pgrad tune {setup.algo} --env {setup.env}: trial {best.number}, evaluation return "
        f"{best.value:.2f} after {setup.steps:,} steps (seed {setup.seed})\n"
        f"# pgrad train {setup.algo} --env {setup.env} --config {path}\n"
    )
    body = yaml.safe_dump({**best.user_attrs["config"], "steps": setup.steps}, sort_keys=False)
    runs.atomic_write(path, (header + body).encode())
    return path


def plot_trials(study: Any, setup: Setup) -> Path:
    """``OUT/trials.png``: each trial's return (pruned ones at their last evaluation, marked),
    and the best complete return so far."""
    state = require_optuna().trial.TrialState
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    done = [t for t in finished(study) if t.value is not None]
    for kind, marker, color in ((state.COMPLETE, "o", "C0"), (state.PRUNED, "x", "C3")):
        points = [(t.number, t.value) for t in done if t.state == kind]
        if points:
            x, y = zip(*points, strict=True)
            label = "complete" if kind == state.COMPLETE else "pruned (last evaluation)"
            ax.scatter(x, y, marker=marker, color=color, label=label, zorder=3)
    complete = sorted((t.number, t.value) for t in done if t.state == state.COMPLETE)
    if complete:
        x, y = zip(*complete, strict=True)
        ax.step(x, np.maximum.accumulate(y), where="post", color="C2", label="best so far")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("trial")
    ax.set_ylabel("evaluation return")
    ax.set_title(f"{setup.algo} on {setup.env}: {setup.steps:,} steps per trial")
    return save(fig, setup.out / "trials.png")


def table(study: Any) -> Table:
    """Every trial: state, return, where it stopped, and its config."""
    result = Table("trial", "state", "return", "steps", "config", title="pgrad tune")
    best = None
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    if complete:
        best = study.best_trial.number
    for t in study.trials:
        config = ", ".join(f"{k}={_short(v)}" for k, v in t.user_attrs.get("config", {}).items())
        value = "" if t.value is None else f"{t.value:.1f}"
        steps = t.user_attrs.get(
            "pruned_at", study.user_attrs["steps"] if t.value is not None else ""
        )
        name = f"{t.number} (best)" if t.number == best else str(t.number)
        result.add_row(
            name, t.state.name.lower(), value, f"{steps:,}" if steps != "" else "", config
        )
    return result


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, list):
        return "x".join(map(str, value))
    return str(value)
