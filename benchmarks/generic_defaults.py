"""The generic defaults (``pgrad.space_defaults``) on envs pgrad has no entry for: each custom env
of ``custom_envs.py`` trained by PPO with the generic layer ("generic") and without it ("bare":
the algorithm's own defaults), and by SAC on the continuous ones (first seed only: SAC's
gradient step per env step is slow here); final evaluation per seed.

    python benchmarks/generic_defaults.py --seeds 0 1 --out /tmp/generic   # ~12 min on 2 cores

Writes ``OUT/results.json`` and prints a markdown table (mean ± std over seeds, and the solved
threshold of each env from ``custom_envs``' docstring).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # custom_envs, beside this script

BARE = {"normalize_obs": False, "normalize_reward": False, "log_std_init": 0.0}
ROWS = [  # env, solved at, algo, steps
    ("SparseCorridor-v0", 0.95, "ppo", 50_000),
    ("WideTarget-v0", -4.0, "ppo", 200_000),
    ("TinyActions-v0", -4.0, "ppo", 200_000),
    ("BigReward-v0", 475_000.0, "ppo", 100_000),
    ("WideTarget-v0", -4.0, "sac", 10_000),
    ("TinyActions-v0", -4.0, "sac", 10_000),
]


def main() -> None:
    import pgrad

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--out", type=Path, default=Path("/tmp/pgrad-generic"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    for env, solved, algo, steps in ROWS:
        for variant in ("bare", "generic") if algo == "ppo" else ("generic",):
            for seed in args.seeds if algo == "ppo" else args.seeds[:1]:  # SAC: slow here
                start = time.perf_counter()
                overrides = BARE if variant == "bare" else {}
                run = pgrad.train(algo, f"custom_envs:{env}", steps=steps, seed=seed,
                                  run_dir=args.out / f"{algo}-{env}-{variant}-s{seed}",
                                  eval_episodes=10, **overrides)  # fmt: skip
                results.append({"env": env, "algo": algo, "variant": variant, "seed": seed,
                                "steps": steps, "solved_at": solved,
                                "return": run.summary["mean_return"],
                                "wall_s": round(time.perf_counter() - start, 1)})  # fmt: skip
                print(json.dumps(results[-1]), flush=True)
                (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    lines = ["| env | algo | steps | defaults | final return (mean ± std) | per seed | solved at |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for env, solved, algo, steps in ROWS:
        for variant in ("bare", "generic"):
            got = [r["return"] for r in results
                   if (r["env"], r["algo"], r["variant"]) == (env, algo, variant)]  # fmt: skip
            if got:
                mean, spread = statistics.mean(got), statistics.pstdev(got)
                seeds = ", ".join(f"{g:.4g}" for g in got)
                lines.append(f"| {env} | {algo} | {steps:,} | {variant} | {mean:.4g} ± "
                             f"{spread:.2g} | {seeds} | {solved:g} |")  # fmt: skip
    print("\n".join(lines))


if __name__ == "__main__":
    main()
