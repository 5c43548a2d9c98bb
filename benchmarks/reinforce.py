"""Learning benchmark for REINFORCE: several seeds per algorithm, steps to a target return.

    python benchmarks/reinforce.py --env CartPole-v1 --algos reinforce reinforce_baseline \
        --seeds 0 1 2 3 4 --target 475 --eval-every 10000

Each run uses pgrad's shipped defaults for the env, evaluates (10 deterministic episodes) every
``--eval-every`` steps, and reports the final evaluation, the first step at which an evaluation
reached ``--target``, and the training wall time. Runs go ``--workers`` at a time, one torch
thread each. Prints a Markdown table (and ``--json``).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import tempfile
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import numpy as np


def one_run(
    algo: str, env: str, seed: int, eval_every: int, target: float, sets: list[str]
) -> dict:
    import pgrad

    with tempfile.TemporaryDirectory() as tmp:
        run = pgrad.train(
            algo, env, seed=seed, run_dir=f"{tmp}/run", eval_every=eval_every, sets=sets
        )
        rows = run.metrics()
        summary = run.summary
    reached = [
        r["step"] for r in rows if not math.isnan(r["eval_return"]) and r["eval_return"] >= target
    ]
    return {
        "algo": algo,
        "env": env,
        "seed": seed,
        "final_return": summary["mean_return"],
        "steps": summary["steps"],
        "steps_to_target": int(reached[0]) if reached else None,
        "train_time_s": summary["train_time_s"],
        "sps": summary["sps"],
    }


def random_policy_return(env_id: str, episodes: int = 100, seed: int = 0) -> tuple[float, float]:
    import gymnasium as gym

    env = gym.make(env_id)
    env.action_space.seed(seed)
    returns = []
    for i in range(episodes):
        env.reset(seed=seed + i)
        total, done = 0.0, False
        while not done:
            _, r, term, trunc, _ = env.step(env.action_space.sample())
            total += float(r)
            done = term or trunc
        returns.append(total)
    return float(np.mean(returns)), float(np.std(returns))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--algos", nargs="+", default=["reinforce", "reinforce_baseline"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--target", type=float, default=475.0)
    parser.add_argument("--eval-every", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--set", dest="sets", action="append", default=[])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    jobs = [
        (a, args.env, s, args.eval_every, args.target, args.sets)
        for a in args.algos
        for s in args.seeds
    ]
    with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool:
        results = list(pool.map(one_run, *zip(*jobs, strict=True)))
    random_mean, random_std = random_policy_return(args.env)

    if args.json:
        print(json.dumps({"runs": results, "random_policy": [random_mean, random_std]}, indent=2))
    machine = platform.processor() or platform.machine()
    print(f"\nMachine: {machine}, {args.workers} runs at a time, 1 torch thread each")
    print(f"Random policy on {args.env}: {random_mean:.1f} ± {random_std:.1f} (100 episodes)\n")
    header = (
        f"| algo | seed | final eval return | steps to {args.target:g} | train time (s) | SPS |"
    )
    print(header)
    print("|---|---|---|---|---|---|")
    for r in results:
        to = r["steps_to_target"] if r["steps_to_target"] is not None else "not reached"
        cells = [r["algo"], r["seed"], f"{r['final_return']:.1f}", to]
        cells += [f"{r['train_time_s']:.0f}", f"{r['sps']:.0f}"]
        print("| " + " | ".join(map(str, cells)) + " |")
    print(
        "\n| algo | seeds at the target at the end | mean steps to target (seeds that reached it)"
        " | median wall time (s) |"
    )
    print("|---|---|---|---|")
    for algo in args.algos:
        rs = [r for r in results if r["algo"] == algo]
        ok = sum(r["final_return"] >= args.target for r in rs)
        to = [r["steps_to_target"] for r in rs if r["steps_to_target"] is not None]
        mean_to = f"{statistics.mean(to):,.0f} ({len(to)}/{len(rs)})" if to else "-"
        wall = statistics.median(r["train_time_s"] for r in rs)
        print(f"| {algo} | {ok}/{len(rs)} | {mean_to} | {wall:.0f} |")


if __name__ == "__main__":
    main()
