"""``pgrad.train``: resolve a config, run an algorithm's updates, log, checkpoint, evaluate."""

from __future__ import annotations

import math
import random
import signal
import threading
import time
from collections.abc import Iterable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pgrad import algos, runs
from pgrad.agent import EVAL_SEED_OFFSET, evaluate
from pgrad.config import Config, build, parse_set, read_file, shipped_defaults, to_dict
from pgrad.envs import (
    check_env_id,
    load_normalization_state,
    make_vec_env,
    normalization_state,
)
from pgrad.errors import NonFiniteError
from pgrad.logging import MetricsLogger
from pgrad.plot import plot_runs
from pgrad.watchdog import Watchdog


def resolve(
    algo: str,
    env: str,
    steps: int | None = None,
    seed: int | None = None,
    config: str | Path | dict[str, Any] | None = None,
    sets: Iterable[str] = (),
    **overrides: Any,
) -> Config:
    """The config of ``algo`` on ``env``: defaults < defaults.yaml < config < sets < kwargs."""
    spec = algos.get(algo)
    check_env_id(env)
    layers = [spec.preset, shipped_defaults(algo, env)]
    if config is not None:
        layers.append(config if isinstance(config, dict) else read_file(config))
    layers.append(dict(parse_set(item) for item in sets))
    layers.append(overrides)
    layers.append({k: v for k, v in (("steps", steps), ("seed", seed)) if v is not None})
    return build(spec.config_cls, layers, algo)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train(
    algo: str,
    env: str = "CartPole-v1",
    steps: int | None = None,
    seed: int | None = None,
    config: str | Path | dict[str, Any] | None = None,
    run_dir: str | Path | None = None,
    sets: Iterable[str] = (),
    progress: bool = False,
    **overrides: Any,
) -> runs.Run:
    """Train ``algo`` on ``env`` and return the finished run directory.

    Everything is checked (algorithm, env id, every config value) before anything is written.
    """
    cfg = resolve(algo, env, steps, seed, config, sets, **overrides)
    spec = algos.get(algo)
    torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    envs = make_vec_env(
        env, cfg.n_envs, cfg.vectorization, normalize_obs=cfg.normalize_obs,
        normalize_reward=cfg.normalize_reward, gamma=cfg.gamma,
    )  # fmt: skip
    eval_envs = make_vec_env(env, min(cfg.eval_episodes, 10), normalize_obs=cfg.normalize_obs)
    algorithm = spec.make(cfg, envs, cfg.seed)
    path = runs.create(run_dir, algo, env, cfg.seed)
    meta = {"algo": algo, "env": env, "pgrad_version": version("pgrad")}
    runs.write_yaml(path / "config.yaml", {**meta, **to_dict(cfg)})

    def checkpoint(step: int) -> None:
        state = {
            "algo": algo,
            "env": env,
            "model": algorithm.model.state_dict(),
            "optimizer": algorithm.optimizer.state_dict(),
            "normalization": normalization_state(envs),
        }
        runs.save_checkpoint(path, step, state, cfg.keep_checkpoints)

    def evaluation() -> np.ndarray:
        # The policy sees observations normalised by the training statistics, frozen.
        load_normalization_state(eval_envs, normalization_state(envs), frozen=True)
        algorithm.model.eval()
        returns = evaluate(
            algorithm.model, env, cfg.eval_episodes, cfg.seed + EVAL_SEED_OFFSET, envs=eval_envs
        )
        algorithm.model.train()
        return returns

    logger = MetricsLogger(path, cfg.steps, progress)
    watchdog = Watchdog(cfg.steps)
    warnings: list[str] = []
    start = time.perf_counter()
    step = iteration = 0
    next_eval, next_checkpoint, next_log = cfg.eval_every, cfg.checkpoint_every, cfg.log_every
    pending: list[dict[str, float]] = []
    stop = _StopSignals()
    try:
        while step < cfg.steps and stop.signal is None:
            try:
                metrics = algorithm.iterate()
            except NonFiniteError as e:
                last = runs.checkpoints(path)
                kept = f"the last good checkpoint is {last[-1]}" if last else "no checkpoint yet"
                raise NonFiniteError(
                    f"{e} in update {iteration + 1} (after step {step:,}); the update was not "
                    f"applied and the run stopped; {kept}"
                ) from None
            step += int(metrics.pop("steps"))
            iteration += 1
            pending.append(metrics)
            eval_return = float("nan")
            if cfg.eval_every and step >= next_eval:
                eval_return = float(evaluation().mean())
                next_eval = _next(next_eval, step, cfg.eval_every)
            if step >= next_log or step >= cfg.steps or not math.isnan(eval_return):
                row = {"iteration": iteration, **_average(pending), "eval_return": eval_return}
                logger.write(step, row)
                for message in watchdog.update(step, row):
                    warnings.append(message)
                    logger.warn(message)
                pending = []
                next_log = _next(next_log, step, cfg.log_every)
            if step >= next_checkpoint:
                checkpoint(step)
                next_checkpoint = _next(next_checkpoint, step, cfg.checkpoint_every)
        if pending:  # stopped by a signal between log rows
            logger.write(
                step, {"iteration": iteration, **_average(pending), "eval_return": math.nan}
            )
        checkpoint(step)
        train_time = time.perf_counter() - start
        returns = evaluation() if stop.signal is None else None
    finally:
        stop.restore()
        logger.close()
        envs.close()
        eval_envs.close()
    summary = {
        "mean_return": None if returns is None else float(returns.mean()),
        "std_return": None if returns is None else float(returns.std()),
        "episodes": 0 if returns is None else len(returns),
        "steps": step,
        "wall_time_s": round(time.perf_counter() - start, 3),
        "train_time_s": round(train_time, 3),
        "sps": round(step / train_time, 1),
        "algo": algo,
        "env": env,
        "seed": cfg.seed,
        "warnings": warnings,
    }
    if stop.signal is not None:
        summary["interrupted"] = signal.Signals(stop.signal).name
    runs.write_json(path / "summary.json", summary)
    run = runs.Run(path)
    plot_runs([run], path / "learning_curve.png")
    return run


class _StopSignals:
    """SIGINT/SIGTERM ask the training loop to stop after the current update (it then saves a
    final checkpoint and returns); a second signal interrupts at once."""

    def __init__(self):
        self.signal: int | None = None
        self.previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: object) -> None:
        if self.signal is not None:
            raise KeyboardInterrupt
        self.signal = signum

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def _next(due: int, step: int, every: int) -> int:
    """The first multiple of ``every`` after ``step``, counting on from ``due``."""
    while due <= step:
        due += every
    return due


def _average(rows: list[dict[str, float]]) -> dict[str, float]:
    """Updates since the last row, merged: episodes summed, episode figures weighted by episodes,
    everything else averaged over updates."""
    episodes = sum(r["episodes"] for r in rows)
    out: dict[str, float] = {"episodes": episodes}
    for key in rows[0]:
        if key == "episodes":
            continue
        if key.startswith("episode_"):
            weighted = [(r[key], r["episodes"]) for r in rows if r["episodes"]]
            out[key] = sum(v * n for v, n in weighted) / episodes if episodes else float("nan")
        else:
            finite = [r[key] for r in rows if not math.isnan(r[key])]
            out[key] = float(np.mean(finite)) if finite else float("nan")
    return out
