"""``pgrad.train``: resolve a config, run an algorithm's updates, log, checkpoint, evaluate."""

from __future__ import annotations

import math
import pickle
import random
import signal
import time
import warnings
from collections.abc import Callable, Iterable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import cloudpickle
import gymnasium as gym
import numpy as np
import torch

from pgrad import algos, device, launch, runs, space_defaults
from pgrad.agent import EVAL_SEED_OFFSET, evaluate
from pgrad.config import Config, build, shipped_defaults, to_dict, user_layers
from pgrad.envs import (
    check_env_id,
    load_normalization_state,
    make_vec_env,
    normalization_state,
)
from pgrad.errors import NonFiniteError, PgradError
from pgrad.fast import set_threads
from pgrad.logging import MetricsLogger
from pgrad.loop import Loop, StopSignals
from pgrad.plot import plot_runs
from pgrad.watchdog import Watchdog


def pgrad_version() -> str:
    """The installed distribution's version; "unknown" when pgrad runs from a source tree that
    was never installed (``PYTHONPATH=src``), which must not stop a run."""
    try:
        return version("pgrad")
    except PackageNotFoundError:
        return "unknown"


def resolve(
    algo: str,
    env: str,
    steps: int | None = None,
    seed: int | None = None,
    config: str | Path | dict[str, Any] | None = None,
    sets: Iterable[str] = (),
    **overrides: Any,
) -> Config:
    """The config of ``algo`` on ``env``: defaults < defaults.yaml < config < sets < kwargs.

    An env without a ``defaults.yaml`` entry for ``algo`` gets ``space_defaults.for_spaces``
    instead (reward and observation normalisation, exploration sized to the action bounds),
    read from one instance of the env."""
    spec = algos.get(algo)
    env_spec = check_env_id(env)
    shipped = shipped_defaults(algo, env)
    spaced = {} if shipped else _from_spaces(algo, env_spec)
    users = [*user_layers(config, sets), overrides]
    users.append({k: v for k, v in (("steps", steps), ("seed", seed)) if v is not None})
    resolved = build(spec.config_cls, [spec.preset, shipped or spaced, *users], algo)
    if getattr(resolved, "squash", None) == "tanh" and "log_std_init" in spaced:
        # A tanh squash maps [-1, 1] onto the bounds already: a std sized to them as well would
        # start with nearly every action at a bound (space_defaults, "Action bounds").
        spaced = {k: v for k, v in spaced.items() if k != "log_std_init"}
        resolved = build(spec.config_cls, [spec.preset, spaced, *users], algo)
    return resolved


def _from_spaces(algo: str, env: gym.envs.registration.EnvSpec) -> dict[str, Any]:
    if algo not in space_defaults.NORMALIZING:  # nothing to read: no env made
        return {}
    try:
        one = gym.make(env)
    except gym.error.DependencyNotInstalled as e:
        raise PgradError(f"env {env.id!r} cannot be made here: {e}") from None
    try:
        return space_defaults.for_spaces(algo, one.observation_space, one.action_space)
    finally:
        one.close()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train(
    algo: str | None = None,
    env: str = "CartPole-v1",
    steps: int | None = None,
    seed: int | None = None,
    config: str | Path | dict[str, Any] | None = None,
    run_dir: str | Path | None = None,
    sets: Iterable[str] = (),
    progress: bool = False,
    resume: str | Path | None = None,
    callback: Callable[[int, dict[str, float], torch.nn.Module], bool | None] | None = None,
    **overrides: Any,
) -> runs.Run:
    """Train ``algo`` on ``env`` and return the finished run directory.

    Everything is checked (algorithm, env id, every config value) before anything is written.
    With ``resume=RUN_DIR``, continue that run from its latest checkpoint instead (``steps``
    may raise its budget): same config, model, optimizer, normalisation statistics, RNG states,
    env state (where the env can be pickled) and counters, so it logs what the uninterrupted run
    would have logged.

    ``callback(step, row, model)``, if given, is called after every logged metrics row (the
    row as written to ``metrics.csv``, the model being trained). It may read the model, not
    change it; returning ``False`` stops the run after that update as SIGINT would (final
    checkpoint, summary ``interrupted: "callback"``). A live view (``pgrad playground``) or a
    pruner hooks in here.
    """
    if resume is not None:
        given = algo
        on = overrides.pop("device", None)
        given_too = {"seed": seed, "config": config, "run_dir": run_dir, "sets": list(sets) or None}
        ignored = [k for k, v in given_too.items() if v is not None] + list(overrides)
        if ignored:
            raise PgradError(
                f"resume continues a run as configured; it takes only steps and device, "
                f"not {', '.join(ignored)}"
            )
        path, algo, env, cfg, saved = _resume_config(resume, steps, on)
        if given is not None and given != algo:
            raise PgradError(f"run {str(resume)!r} is a {algo!r} run, not {given!r}")
    else:
        if algo is None:
            raise PgradError("train needs an algorithm name (or resume=RUN_DIR)")
        cfg = resolve(algo, env, steps, seed, config, sets, **overrides)
        saved = None
    device.resolve(cfg.device)  # a device this machine lacks fails before anything is written
    set_threads(cfg.threads)
    seed_everything(cfg.seed)
    envs = make_vec_env(
        env, cfg.n_envs, cfg.vectorization, normalize_obs=cfg.normalize_obs,
        normalize_reward=cfg.normalize_reward, gamma=cfg.gamma,
    )  # fmt: skip
    eval_envs = make_vec_env(env, min(cfg.eval_episodes, 10), normalize_obs=cfg.normalize_obs)
    algorithm = launch.algorithm(algo, cfg, envs, cfg.seed)
    if saved is None:
        path = runs.create(run_dir, algo, env, cfg.seed)
        meta = {"algo": algo, "env": env, "pgrad_version": pgrad_version()}
        runs.write_yaml(path / "config.yaml", {**meta, **to_dict(cfg)})
        loop = Loop(cfg, Watchdog(cfg.steps))
    else:
        envs, loop = _restore(saved, algorithm, envs, cfg)
        if getattr(loop, "learning_rate", None) is not None:  # lowered by nan_retries
            _set_learning_rate(algorithm, cfg, loop.learning_rate)

    def checkpoint(step: int) -> None:
        state = {
            "algo": algo,
            "env": env,
            "model": algorithm.model.state_dict(),
            "optimizer": algorithm.optimizer.state_dict(),
            "normalization": normalization_state(envs),
            "training": _training_state(loop, algorithm, envs),
        }
        runs.save_checkpoint(path, step, state, cfg.keep_checkpoints)

    def evaluation() -> np.ndarray:
        # The policy sees observations normalised by the training statistics, frozen. Training
        # must not depend on whether it was evaluated: the evaluation's draws from torch's
        # generator (its stepper's seed) are taken from a fork, and the training stream goes on.
        load_normalization_state(eval_envs, normalization_state(envs), frozen=True)
        algorithm.model.eval()
        with device.forked_rng(device.of(algorithm.model)):
            returns = evaluate(
                algorithm.model, env, cfg.eval_episodes, cfg.seed + EVAL_SEED_OFFSET,
                envs=eval_envs,
            )  # fmt: skip
        algorithm.model.train()
        return returns

    logger = MetricsLogger(path, cfg.steps, progress, keep_rows_to=loop.step if saved else None,
                           time_before=loop.train_time)  # fmt: skip
    start = time.perf_counter() - loop.train_time
    stop = StopSignals()
    retries = getattr(loop, "retries", 0)  # a resumed run has the rest of its retries
    stopped: str | None = None
    try:
        while loop.step < cfg.steps and stop.signal is None and stopped is None:
            try:
                metrics = algorithm.iterate()
            except NonFiniteError as e:
                last = runs.checkpoints(path)
                if last and retries < cfg.nan_retries:
                    retries += 1
                    envs, loop = _restore(runs.load_checkpoint(last[-1]), algorithm, envs, cfg)
                    _set_learning_rate(algorithm, cfg, cfg.learning_rate * cfg.nan_lr_factor)
                    loop.retries, loop.learning_rate = retries, cfg.learning_rate
                    logger.truncate(loop.step)
                    message = (
                        f"{e} in update {loop.iteration + 1}: back to the checkpoint at step "
                        f"{loop.step:,} with learning_rate {cfg.learning_rate:.3g} "
                        f"(retry {retries} of {cfg.nan_retries})"
                    )
                    loop.warnings.append(message)
                    logger.warn(message, loop.step)
                    continue
                kept = f"the last good checkpoint is {last[-1]}" if last else "no checkpoint yet"
                raise NonFiniteError(
                    f"{e} in update {loop.iteration + 1} (after step {loop.step:,}); the update "
                    f"was not applied and the run stopped; {kept}"
                ) from None
            loop.advance(int(metrics.pop("steps")), metrics)
            evaluated = loop.evaluation_due(cfg)
            eval_return = float(evaluation().mean()) if evaluated else math.nan
            if loop.log_due(cfg, cfg.steps, evaluated):
                row = _row(loop, eval_return)
                loop.log(logger, row)
                if callback is not None and callback(loop.step, row, algorithm.model) is False:
                    stopped = "callback"
            if loop.checkpoint_due(cfg):
                loop.train_time = time.perf_counter() - start
                checkpoint(loop.step)
        if loop.pending:  # stopped by a signal between log rows
            loop.log(logger, _row(loop, math.nan))
        loop.train_time = time.perf_counter() - start
        checkpoint(loop.step)
        if stop.signal is not None:
            stopped = signal.Signals(stop.signal).name
        returns = evaluation() if stopped is None else None
    finally:
        stop.restore()
        algorithm.close()
        logger.close()
        envs.close()
        eval_envs.close()
    summary = {
        "mean_return": None if returns is None else float(returns.mean()),
        "std_return": None if returns is None else float(returns.std()),
        "episodes": 0 if returns is None else len(returns),
        "steps": loop.step,
        "wall_time_s": round(time.perf_counter() - start, 3),
        "train_time_s": round(loop.train_time, 3),
        "sps": round(loop.step / loop.train_time, 1),
        "algo": algo,
        "env": env,
        "seed": cfg.seed,
        "warnings": loop.warnings,
    }
    if stopped is not None:
        summary["interrupted"] = stopped
    runs.write_json(path / "summary.json", summary)
    run = runs.Run(path)
    plot_runs([run], path / "learning_curve.png")
    return run


def _set_learning_rate(algorithm: algos.Algorithm, cfg: Config, learning_rate: float) -> None:
    """The config's rate (which A2C's and PPO's schedules start from) and the optimizer's."""
    cfg.learning_rate = learning_rate
    for group in algorithm.optimizer.param_groups:
        group["lr"] = learning_rate


class _Loop(Loop):
    """The name checkpoints written before ``pgrad.loop`` existed pickled the loop under."""


def _row(loop: Loop, eval_return: float) -> dict[str, float]:
    """A control run's metrics row: the updates since the last, and the evaluation's return."""
    return {"iteration": loop.iteration, **loop.take(), "eval_return": eval_return}


def _env_blob(envs: gym.vector.VectorEnv) -> bytes | None:
    """The vector env (sub-envs, wrappers, RNGs) pickled, or None where that cannot be trusted:
    MuJoCo's simulator state does not survive pickling, and some envs (Box2D, subprocesses)
    cannot be pickled at all."""
    sub_envs = getattr(envs.unwrapped, "envs", [])
    if any(c.__name__ == "MujocoEnv" for e in sub_envs for c in type(e.unwrapped).__mro__):
        return None
    try:
        return cloudpickle.dumps(envs)
    except Exception:  # whatever an env's members raise when pickled
        return None


def _training_state(loop: Loop, algorithm: algos.Algorithm, envs: gym.vector.VectorEnv) -> Any:
    """Everything else ``resume`` restores, pickled into a byte tensor (the checkpoint itself
    stays loadable with ``weights_only=True``)."""
    rng = {
        **device.rng_state(device.of(algorithm.model)),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    payload = {"loop": loop, "algorithm": algorithm.state(), "envs": _env_blob(envs), "rng": rng}
    return torch.frombuffer(bytearray(pickle.dumps(payload)), dtype=torch.uint8)


def _resume_config(
    run_dir: str | Path, steps: int | None, on: str | None = None
) -> tuple[Path, str, str, Config, dict[str, Any]]:
    """The run's saved config (with ``steps`` and the device ``on``, where given) and state."""
    run = runs.Run.open(run_dir)
    meta = run.config
    algo, env = meta["algo"], meta["env"]
    settings = {k: v for k, v in meta.items() if k not in ("algo", "env", "pgrad_version")}
    if steps is not None:
        settings["steps"] = steps
    if on is not None:  # continue elsewhere (a GPU run on a CPU-only machine)
        settings["device"] = on
    cfg = build(algos.get(algo).config_cls, [settings], algo)
    state = runs.load_checkpoint(run.latest_checkpoint())
    if "training" not in state:
        raise PgradError(f"{run.latest_checkpoint()} holds no training state to resume from")
    if steps is not None and steps < state["step"]:
        raise PgradError(
            f"steps {steps:,} is below the {state['step']:,} this run has done; resume takes "
            "a larger budget, or none to finish the run's own"
        )
    if steps is not None:
        runs.write_yaml(run.path / "config.yaml", {**meta, "steps": steps})
    return run.path, algo, env, cfg, state


def _restore(
    state: dict[str, Any], algorithm: algos.Algorithm, envs: gym.vector.VectorEnv, cfg: Config
) -> tuple[gym.vector.VectorEnv, Loop]:
    """Put a checkpoint's state into a freshly built algorithm; returns the env to train in
    (the restored one where it was saved) and the loop state."""
    payload = pickle.loads(state["training"].numpy().tobytes())
    algorithm.model.load_state_dict(state["model"])
    algorithm.optimizer.load_state_dict(state["optimizer"])
    if payload["envs"] is not None:
        envs.close()
        envs = pickle.loads(payload["envs"])
    else:
        load_normalization_state(envs, state["normalization"])
        warnings.warn(
            "this env's state cannot be saved: the resumed run continues in fresh episodes, so "
            "its metrics will differ from an uninterrupted run's",
            stacklevel=3,
        )
    algorithm.load_state(payload["algorithm"], envs, env_restored=payload["envs"] is not None)
    loop: Loop = payload["loop"]
    loop.watchdog.total_steps = cfg.steps
    device.set_rng_state(payload["rng"], device.of(algorithm.model))
    np.random.set_state(payload["rng"]["numpy"])
    random.setstate(payload["rng"]["python"])
    return envs, loop
