"""Training throughput (env steps per second) of pgrad beside Stable-Baselines3, side by side.

    pip install -e '.[bench]'
    python benchmarks/throughput.py --case ppo-CartPole-zoo --pairs 5
    python benchmarks/throughput.py --case a2c-CartPole --pairs 5 --json
    python benchmarks/throughput.py --case ppo-HalfCheetah --pairs 5 --versus /tmp/base/src
    python benchmarks/throughput.py --case sac-Pendulum --pairs 3 --device cuda

Each pair trains pgrad, then SB3 (alternating, so drift in the machine's load hits both), in this
same process, with the same torch thread count, number of envs, steps per rollout, epochs and
minibatch size, for ``--steps`` env steps. Timed: the training loop only (pgrad's ``train`` loop
with logging and the final checkpoint, no evaluation; SB3's ``learn``), not construction.
``--versus SRC`` compares pgrad with pgrad instead: each pair trains the code under ``SRC`` (an
older checkout's ``src``), then this checkout's, each in a fresh subprocess, alternating, and
prints both SPS and their ratio (new / old). ``--device cuda`` puts both libraries' learners on
the GPU (pgrad's ``device`` key, SB3's ``device=``; default cpu). Also measured (without
``--versus``): the env's own step rate with random actions in the same vector env (the ceiling
no learner can pass) and pgrad's share of it. Prints per pair both SPS and their ratio, then
medians.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

CASES: dict[str, dict[str, Any]] = {
    # rl-zoo's CartPole PPO: 8 envs x 32 steps, one minibatch of 256, 20 epochs.
    "ppo-CartPole-zoo": {
        "algo": "ppo",
        "env": "CartPole-v1",
        "steps": 50_000,
        "hp": {"n_envs": 8, "n_steps": 32, "batch_size": 256, "n_epochs": 20},
    },
    # CleanRL's ppo.py: 4 envs x 128 steps, 4 epochs of 4 minibatches.
    "ppo-CartPole-cleanrl": {
        "algo": "ppo",
        "env": "CartPole-v1",
        "steps": 50_000,
        "hp": {"n_envs": 4, "n_steps": 128, "batch_size": 128, "n_epochs": 4},
    },
    "a2c-CartPole": {
        "algo": "a2c",
        "env": "CartPole-v1",
        "steps": 50_000,
        "hp": {"n_envs": 8, "n_steps": 5},
    },
    # CleanRL's / SB3's MuJoCo PPO: 1 env x 2048 steps, minibatches of 64, 10 epochs.
    "ppo-HalfCheetah": {
        "algo": "ppo",
        "env": "HalfCheetah-v5",
        "steps": 16_384,
        "hp": {"n_envs": 1, "n_steps": 2048, "batch_size": 64, "n_epochs": 10},
    },
    # rl-zoo's Pendulum SAC: 1 env, lr 1e-3, one update of 256 per step, 256x256 ReLU networks
    # (both libraries' defaults), updates from step 100.
    "sac-Pendulum": {
        "algo": "sac",
        "env": "Pendulum-v1",
        "steps": 3_000,
        "hp": {"n_envs": 1, "learning_rate": 1e-3, "learning_starts": 100, "batch_size": 256},
    },
}


def pgrad_sps(
    case: dict[str, Any], steps: int, threads: int, seed: int, device: str = "cpu"
) -> float:
    import pgrad

    hp = case["hp"]
    if case["algo"] == "sac":  # both libraries' SAC defaults are the same networks
        with tempfile.TemporaryDirectory() as tmp:
            run = pgrad.train(
                "sac", case["env"], steps=steps, seed=seed, run_dir=f"{tmp}/r", threads=threads,
                eval_every=0, eval_episodes=1, checkpoint_every=10**9, device=device, **hp,
            )  # fmt: skip
            return run.summary["steps"] / run.summary["train_time_s"]
    # SB3's MlpPolicy: separate [64, 64] tanh actor and critic, orthogonal init, no normalisation
    # (pgrad's shipped per-env defaults may differ: pin the network so the work is the same).
    overrides: dict[str, Any] = {
        "n_envs": hp["n_envs"],
        "n_steps": hp["n_steps"],
        "hidden_sizes": [64, 64],
        "activation": "tanh",
        "ortho_init": True,
        "normalize_obs": False,
        "normalize_reward": False,
    }
    if case["algo"] == "ppo":
        overrides.update(batch_size=hp["batch_size"], n_epochs=hp["n_epochs"])
    with tempfile.TemporaryDirectory() as tmp:
        run = pgrad.train(
            case["algo"], case["env"], steps=steps, seed=seed, run_dir=f"{tmp}/r",
            threads=threads, eval_every=0, eval_episodes=1, checkpoint_every=10**9, device=device,
            **overrides,
        )  # fmt: skip
        return run.summary["steps"] / run.summary["train_time_s"]


def sb3_sps(
    case: dict[str, Any], steps: int, threads: int, seed: int, device: str = "cpu"
) -> float:
    import torch
    from stable_baselines3 import A2C, PPO, SAC
    from stable_baselines3.common.env_util import make_vec_env

    torch.set_num_threads(threads)
    hp = dict(case["hp"])
    env = make_vec_env(case["env"], n_envs=hp.pop("n_envs"), seed=seed)
    cls = {"ppo": PPO, "a2c": A2C, "sac": SAC}[case["algo"]]
    model = cls("MlpPolicy", env, seed=seed, device=device, verbose=0, **hp)
    start = time.perf_counter()
    model.learn(steps)
    elapsed = time.perf_counter() - start
    env.close()
    return model.num_timesteps / elapsed


def env_ceiling(case: dict[str, Any], steps: int) -> float:
    """Env steps per second with random actions, in pgrad's vector env for this case."""
    from pgrad.envs import make_vec_env

    envs = make_vec_env(case["env"], case["hp"]["n_envs"])
    envs.reset(seed=0)
    envs.action_space.seed(0)
    n = envs.num_envs
    start = time.perf_counter()
    for _ in range(steps // n):
        envs.step(envs.action_space.sample())
    elapsed = time.perf_counter() - start
    envs.close()
    return (steps // n) * n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--case", choices=list(CASES), required=True)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--steps", type=int, help="env steps per measurement (default: the case's)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads, both libraries")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N], both libraries")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--versus", metavar="SRC", help="compare with pgrad from this src dir")
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--pgrad-sps-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    case = CASES[args.case]
    steps = args.steps or case["steps"]
    if args.pgrad_sps_only:  # one measurement, for --versus
        print(pgrad_sps(case, steps, args.threads, seed=args.seed))
        return
    if args.versus:
        versus(args, steps)
        return
    pairs = []
    for i in range(args.pairs):
        p = pgrad_sps(case, steps, args.threads, seed=i, device=args.device)
        s = sb3_sps(case, steps, args.threads, seed=i, device=args.device)
        pairs.append({"pgrad_sps": p, "sb3_sps": s, "ratio": p / s})
        if not args.json:
            print(f"pair {i}: pgrad {p:8.0f} SPS   sb3 {s:8.0f} SPS   ratio {p / s:5.2f}")
    ceiling = env_ceiling(case, max(steps, 20_000))
    pgrad_median = statistics.median(r["pgrad_sps"] for r in pairs)
    result = {
        "case": args.case,
        **{k: case[k] for k in ("algo", "env")},
        "hyperparameters": case["hp"],
        "steps": steps,
        "threads": args.threads,
        "device": args.device,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "pairs": pairs,
        "median_pgrad_sps": pgrad_median,
        "median_sb3_sps": statistics.median(r["sb3_sps"] for r in pairs),
        "median_ratio": statistics.median(r["ratio"] for r in pairs),
        "env_ceiling_sps": ceiling,
        "pgrad_share_of_ceiling": pgrad_median / ceiling,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(
        f"median: pgrad {pgrad_median:.0f} SPS, sb3 {result['median_sb3_sps']:.0f} SPS, "
        f"ratio {result['median_ratio']:.2f}; env ceiling {ceiling:.0f} SPS "
        f"(pgrad at {result['pgrad_share_of_ceiling']:.0%} of it)"
    )


def versus(args: argparse.Namespace, steps: int) -> None:
    """Pairs of (pgrad from ``args.versus``, pgrad from this checkout), alternating."""
    here = str(Path(__file__).resolve().parents[1] / "src")
    pairs = []
    for i in range(args.pairs):
        sps = {}
        for name, src in (("old", args.versus), ("new", here)):
            command = [
                sys.executable, __file__, "--case", args.case, "--steps", str(steps),
                "--threads", str(args.threads), "--seed", str(i), "--pgrad-sps-only",
            ]  # fmt: skip
            env = {**os.environ, "PYTHONPATH": src}
            out = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
            sps[name] = float(out.stdout.strip().splitlines()[-1])
        pairs.append({**sps, "ratio": sps["new"] / sps["old"]})
        if not args.json:
            print(f"pair {i}: old {sps['old']:8.0f} SPS   new {sps['new']:8.0f} SPS   "
                  f"ratio {sps['new'] / sps['old']:5.3f}")  # fmt: skip
    result = {
        "case": args.case,
        "versus": args.versus,
        "steps": steps,
        "pairs": pairs,
        "median_old_sps": statistics.median(p["old"] for p in pairs),
        "median_new_sps": statistics.median(p["new"] for p in pairs),
        "median_ratio": statistics.median(p["ratio"] for p in pairs),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"median: old {result['median_old_sps']:.0f} SPS, new {result['median_new_sps']:.0f}"
              f" SPS, ratio {result['median_ratio']:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
