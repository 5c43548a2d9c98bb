"""Wall time to solve CartPole-v1: pgrad's default PPO beside Stable-Baselines3 with rl-zoo's.

    pip install -e '.[bench]'
    python benchmarks/solve_time.py --seeds 0 1 2

Both train with one torch thread and are evaluated every ``--eval-every`` env steps on 10
deterministic episodes (envs seeded ``seed + 10000``); a run is solved at the first evaluation
with mean return >= 475. Reported: the training wall time up to that evaluation (evaluation time
excluded: the two libraries evaluate differently) and the env steps it took. Seeds alternate
between the libraries (pgrad, SB3, pgrad, ...) so drift in the machine's load hits both.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

TARGET = 475.0


def pgrad_run(seed: int, eval_every: int, max_steps: int) -> dict[str, Any]:
    import torch

    from pgrad import algos
    from pgrad.agent import EVAL_SEED_OFFSET, evaluate
    from pgrad.envs import make_vec_env
    from pgrad.train import resolve, seed_everything

    cfg = resolve("ppo", "CartPole-v1", seed=seed)  # the shipped defaults
    torch.set_num_threads(cfg.threads)
    seed_everything(seed)
    envs = make_vec_env("CartPole-v1", cfg.n_envs)
    algorithm = algos.get("ppo").make(cfg, envs, seed)
    steps, train_time, next_eval = 0, 0.0, eval_every
    while steps < max_steps:
        start = time.perf_counter()
        steps += int(algorithm.iterate()["steps"])
        train_time += time.perf_counter() - start
        if steps >= next_eval:
            next_eval += eval_every
            returns = evaluate(algorithm.model, "CartPole-v1", 10, seed + EVAL_SEED_OFFSET)
            if returns.mean() >= TARGET:
                return {"library": "pgrad", "seed": seed, "solved": True, "steps": steps,
                        "train_time_s": train_time}  # fmt: skip
    return {"library": "pgrad", "seed": seed, "solved": False, "steps": steps,
            "train_time_s": train_time}  # fmt: skip


def sb3_run(seed: int, eval_every: int, max_steps: int) -> dict[str, Any]:
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy

    torch.set_num_threads(1)
    # rl-zoo's CartPole-v1 PPO; its linear schedules run over the zoo's 1e5 steps.
    total = 100_000

    def lin(value: float):
        return lambda progress_remaining: progress_remaining * value

    env = make_vec_env("CartPole-v1", n_envs=8, seed=seed)
    eval_env = make_vec_env("CartPole-v1", n_envs=1, seed=seed + 10_000)
    model = PPO(
        "MlpPolicy", env, n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98, n_epochs=20,
        ent_coef=0.0, learning_rate=lin(1e-3), clip_range=lin(0.2), seed=seed, device="cpu",
        verbose=0,
    )  # fmt: skip

    class Solve(BaseCallback):
        def _on_training_start(self) -> None:
            self.start, self.paused = time.perf_counter(), 0.0
            self.next_eval, self.solved_at = eval_every, None

        def _on_step(self) -> bool:
            if self.num_timesteps < self.next_eval:
                return True
            self.next_eval += eval_every
            pause = time.perf_counter()
            mean, _ = evaluate_policy(self.model, eval_env, n_eval_episodes=10, deterministic=True)
            if mean >= TARGET:
                self.solved_at = (self.num_timesteps, pause - self.start - self.paused)
                return False
            self.paused += time.perf_counter() - pause
            return True

    callback = Solve()
    model.learn(min(total, max_steps), callback=callback)
    if callback.solved_at is None:
        return {"library": "sb3", "seed": seed, "solved": False, "steps": model.num_timesteps,
                "train_time_s": time.perf_counter() - callback.start - callback.paused}  # fmt: skip
    steps, train_time = callback.solved_at
    return {"library": "sb3", "seed": seed, "solved": True, "steps": steps,
            "train_time_s": train_time}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--eval-every", type=int, default=5000)
    parser.add_argument("--max-steps", type=int, default=100_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    results = []
    for seed in args.seeds:
        for run in (pgrad_run, sb3_run):
            result = run(seed, args.eval_every, args.max_steps)
            results.append(result)
            if not args.json:
                print(result, flush=True)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print("\n| library | solved | steps to 475 per seed | train time per seed (s) | median (s) |")
    print("|---|---|---|---|---|")
    for lib in ("pgrad", "sb3"):
        rs = [r for r in results if r["library"] == lib]
        times = [r["train_time_s"] for r in rs if r["solved"]]
        median = f"{statistics.median(times):.1f}" if times else "-"
        steps = ", ".join(str(r["steps"]) for r in rs)
        seconds = ", ".join(f"{r['train_time_s']:.1f}" for r in rs)
        print(f"| {lib} | {len(times)}/{len(rs)} | {steps} | {seconds} | {median} |")


if __name__ == "__main__":
    main()
