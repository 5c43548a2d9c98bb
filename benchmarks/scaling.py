"""Throughput (env steps per second) against the number of rollout workers.

    pip install -e '.[bench,ray]'
    python benchmarks/scaling.py --workers 1 2 --steps 60000

Modes (CartPole-v1, each worker with ``--n-envs`` envs and n_steps 5, A2C's loss):

- ``a2c``: the single-process baseline, with ``workers x n_envs`` envs in one process;
- ``a3c``: A3C's Hogwild worker processes on this machine;
- ``ray-a3c``: asynchronous gradients from Ray actors (a local Ray instance);
- ``ray-a2c``: synchronous A2C rounds on Ray actors.

SPS is measured in steady state: the clock starts once ``--warmup`` steps are done (workers
started, Ray up) and stops after ``--steps`` more. Each (mode, workers) runs ``--repeats``
times; the table shows the median. One torch thread per process.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

MODES = {
    "a2c": ("a2c", "local"),
    "a3c": ("a3c", "local"),
    "ray-a3c": ("a3c", "ray"),
    "ray-a2c": ("a2c", "ray"),
}


def steady_sps(mode: str, workers: int, n_envs: int, steps: int, warmup: int) -> float:
    import torch

    from pgrad import algos
    from pgrad.envs import make_vec_env
    from pgrad.train import resolve

    torch.set_num_threads(1)
    algo, backend = MODES[mode]
    settings = {"n_envs": n_envs * workers} if mode == "a2c" else {
        "n_envs": n_envs, "workers": workers, "backend": backend
    }  # fmt: skip
    cfg = resolve(algo, "CartPole-v1", steps=10**9, seed=0, n_steps=5, **settings)
    envs = make_vec_env("CartPole-v1", cfg.n_envs)
    algorithm = algos.get(algo).make(cfg, envs, 0)
    done = 0
    try:
        while done < warmup:
            done += algorithm.iterate()["steps"]
        start, counted = time.perf_counter(), 0
        while counted < steps:
            counted += algorithm.iterate()["steps"]
        return counted / (time.perf_counter() - start)
    finally:
        algorithm.close()
        envs.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--n-envs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=60_000)
    parser.add_argument("--warmup", type=int, default=5_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    results = []
    for repeat in range(args.repeats):  # repeats outermost: load drifts hit every mode alike
        for mode in args.modes:
            for workers in args.workers:
                sps = steady_sps(mode, workers, args.n_envs, args.steps, args.warmup)
                results.append({"mode": mode, "workers": workers, "repeat": repeat, "sps": sps})
                print(f"{mode:8s} workers={workers} repeat={repeat}: {sps:,.0f} SPS", flush=True)
    if args.json:
        print(json.dumps(results, indent=2))
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
    print(f"\nMachine: {machine}; median of {args.repeats} runs; steady state after warm-up\n")
    print("| mode | " + " | ".join(f"{w} worker(s)" for w in args.workers) + " |")
    print("|---|" + "---|" * len(args.workers))
    for mode in args.modes:
        cells = []
        for w in args.workers:
            sps = statistics.median(
                r["sps"] for r in results if r["mode"] == mode and r["workers"] == w
            )
            cells.append(f"{sps:,.0f}")
        print(f"| {mode} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
