"""Env steps per second of Breakout: pgrad's EnvPool backend beside Gymnasium's AsyncVectorEnv.

    pip install -e '.[envpool,atari]' -c constraints.txt
    python benchmarks/envpool_speed.py                       # 8 envs, 2 threads, 2000 steps x 3
    python benchmarks/envpool_speed.py --chain pgrad --json  # Gymnasium side: pgrad.atari's chain

Both sides step ``--envs`` copies of ``ALE/Breakout-v5`` with the same pre-drawn random actions:

- EnvPool: ``pgrad.vec_envpool.make`` (84x84 grayscale, frame skip 4 with max-pooling, 30 no-ops,
  4 stacked frames, episodic life, fire reset, clipped rewards, sticky actions 0.25) on
  ``--threads`` EnvPool threads; also EnvPool's own pool without the adapter ("raw"), to show
  what the adapter costs;
- Gymnasium: ``gym.make_vec(..., vectorization_mode="async", frameskip=1)`` with
  ``AtariPreprocessing(noop_max=30, frame_skip=4, screen_size=84, terminal_on_life_loss=False,
  grayscale_obs=True, scale_obs=False)`` then ``FrameStackObservation(4)`` (``--chain minimal``,
  the default), or pgrad's full chain from ``pgrad.atari`` (``--chain pgrad``: adds episode
  statistics, episodic life, fire reset and reward clipping). AsyncVectorEnv runs one process
  per sub-env: ``--envs`` processes, however many cores there are.

Timed: ``--steps`` vector steps after ``--warmup`` untimed ones, construction and reset excluded;
each side ``--repeats`` times, alternating (so drift in the machine's load hits both); SPS is env
steps (vector steps x envs) per second, the median over repeats. Prints a markdown row.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial

import gymnasium as gym
import numpy as np

ENV_ID = "ALE/Breakout-v5"


def gymnasium_envs(n: int, chain: str) -> gym.vector.VectorEnv:
    import ale_py

    gym.register_envs(ale_py)
    if chain == "pgrad":
        from pgrad import atari

        wrappers = atari.wrappers()
    else:
        preprocessing = partial(
            gym.wrappers.AtariPreprocessing, noop_max=30, frame_skip=4, screen_size=84,
            terminal_on_life_loss=False, grayscale_obs=True, scale_obs=False,
        )  # fmt: skip
        wrappers = [preprocessing, partial(gym.wrappers.FrameStackObservation, stack_size=4)]
    return gym.make_vec(
        ENV_ID, num_envs=n, vectorization_mode="async", wrappers=wrappers, frameskip=1
    )


def envpool_envs(n: int, threads: int) -> gym.vector.VectorEnv:
    from pgrad.vec_envpool import make

    return make(ENV_ID, n, num_threads=threads)


def raw_envpool_envs(n: int, threads: int):
    import envpool

    from pgrad.vec_envpool import envpool_task

    task, options, _ = envpool_task(ENV_ID)
    return envpool.make(task, "gymnasium", num_envs=n, num_threads=threads, seed=0, **options)


def steps_per_second(make: Callable[[], object], actions: np.ndarray, warmup: int) -> float:
    env = make()
    if hasattr(env, "all_env_ids"):  # EnvPool's own pool, seeded when made
        env.reset()
    else:
        env.reset(seed=0)
    for a in actions[:warmup]:
        env.step(a)
    timed = actions[warmup:]
    start = time.perf_counter()
    for a in timed:
        env.step(a)
    elapsed = time.perf_counter() - start
    env.close()
    return timed.size / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--envs", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2, help="EnvPool's worker threads")
    parser.add_argument("--steps", type=int, default=2000, help="timed vector steps")
    parser.add_argument("--warmup", type=int, default=100, help="untimed vector steps first")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chain", choices=["minimal", "pgrad"], default="minimal")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    actions = np.random.default_rng(0).integers(4, size=(args.warmup + args.steps, args.envs))
    sides: dict[str, Callable[[], object]] = {
        "envpool": lambda: envpool_envs(args.envs, args.threads),
        "envpool_raw": lambda: raw_envpool_envs(args.envs, args.threads),
        "gymnasium": lambda: gymnasium_envs(args.envs, args.chain),
    }
    sps: dict[str, list[float]] = {k: [] for k in sides}
    for _ in range(args.repeats):
        for name, make in sides.items():
            sps[name].append(steps_per_second(make, actions, args.warmup))
    median = {k: statistics.median(v) for k, v in sps.items()}
    ratio = median["envpool"] / median["gymnasium"]
    command = "python " + " ".join(sys.argv)
    if args.json:
        print(json.dumps({"args": vars(args), "sps": sps, "median": median, "ratio": ratio,
                          "command": command}))  # fmt: skip
        return
    print(f"`{command}` on {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
    print()
    print(
        "| env | envs | EnvPool SPS (adapter) | EnvPool SPS (raw) | "
        f"Gymnasium async SPS ({args.chain} chain) | EnvPool / Gymnasium |"
    )
    print("|---|---|---|---|---|---|")
    print(
        f"| {ENV_ID} | {args.envs} | {median['envpool']:,.0f} | {median['envpool_raw']:,.0f} | "
        f"{median['gymnasium']:,.0f} | {ratio:.2f}x |"
    )
    print()
    print("repeats:", {k: [round(x) for x in v] for k, v in sps.items()})


if __name__ == "__main__":
    main()
