"""``pgrad.train``: resolve a config, run an algorithm's updates, log, checkpoint, evaluate."""

from __future__ import annotations

import random
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
from pgrad.envs import check_env_id, make_vec_env
from pgrad.logging import MetricsLogger
from pgrad.plot import plot_runs


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
    envs = make_vec_env(env, cfg.n_envs)
    eval_envs = make_vec_env(env, min(cfg.eval_episodes, 10))
    algorithm = spec.make(cfg, envs)
    path = runs.create(run_dir, algo, env, cfg.seed)
    meta = {"algo": algo, "env": env, "pgrad_version": version("pgrad")}
    runs.write_yaml(path / "config.yaml", {**meta, **to_dict(cfg)})

    def checkpoint(step: int) -> None:
        state = {
            "algo": algo,
            "env": env,
            "model": algorithm.model.state_dict(),
            "optimizer": algorithm.optimizer.state_dict(),
        }
        runs.save_checkpoint(path, step, state, cfg.keep_checkpoints)

    def evaluation() -> np.ndarray:
        algorithm.model.eval()
        returns = evaluate(
            algorithm.model, env, cfg.eval_episodes, cfg.seed + EVAL_SEED_OFFSET, envs=eval_envs
        )
        algorithm.model.train()
        return returns

    logger = MetricsLogger(path, cfg.steps, progress)
    start = time.perf_counter()
    step = iteration = 0
    next_eval, next_checkpoint = cfg.eval_every, cfg.checkpoint_every
    try:
        while step < cfg.steps:
            metrics = algorithm.iterate(seed=cfg.seed if iteration == 0 else None)
            step += int(metrics.pop("steps"))
            iteration += 1
            eval_return = float("nan")
            if cfg.eval_every and step >= next_eval:
                eval_return = float(evaluation().mean())
                while next_eval <= step:
                    next_eval += cfg.eval_every
            logger.write(step, {"iteration": iteration, **metrics, "eval_return": eval_return})
            if step >= next_checkpoint:
                checkpoint(step)
                while next_checkpoint <= step:
                    next_checkpoint += cfg.checkpoint_every
        checkpoint(step)
        train_time = time.perf_counter() - start
        returns = evaluation()
    finally:
        logger.close()
        envs.close()
        eval_envs.close()
    summary = {
        "mean_return": float(returns.mean()),
        "std_return": float(returns.std()),
        "episodes": len(returns),
        "steps": step,
        "wall_time_s": round(time.perf_counter() - start, 3),
        "train_time_s": round(train_time, 3),
        "sps": round(step / train_time, 1),
        "algo": algo,
        "env": env,
        "seed": cfg.seed,
    }
    runs.write_json(path / "summary.json", summary)
    run = runs.Run(path)
    plot_runs([run], path / "learning_curve.png")
    return run
