"""Bit-identity check: train short seeded runs and compare their metrics.csv across code versions.

Trains a fixed list of small runs through the CLI (``python -m pgrad ...`` in subprocesses that
inherit the environment, so ``PYTHONPATH`` picks the code under test) and copies each run's
metrics.csv to ``OUT/NAME.csv`` (run directories live in a temp dir; ``OUT/commands.log`` lists
the commands, exit codes and wall times). The RLHF cases share the model of the rlhf-sft case,
which runs first whenever any RLHF case is selected.

    PYTHONPATH=/tmp/base/src python benchmarks/identity.py --out /tmp/identity/before
    python benchmarks/identity.py --out /tmp/identity/after [--only NAME ...] [--jobs 2]
    python benchmarks/identity.py --compare /tmp/identity/before /tmp/identity/after

``--compare`` prints, per NAME, whether the two CSVs are byte-identical or the first differing
line, and for each ``NAME-device-cpu`` case in B whether it equals B's NAME (``--device cpu``
must change nothing); it exits 1 if any differ or are missing.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def gym(algo: str, env: str, steps: int, *extra: str, **sets: object) -> list[str]:
    """``train`` arguments; ``sets`` become ``--set key=value`` over the defaults: a row every 500
    steps; 3 eval episodes halfway and at the end (without eval_every the CSV has no evaluation)."""
    sets = {"log_every": 500, "eval_episodes": 3, "eval_every": steps // 2, **sets}
    pairs = [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]
    return ["train", algo, "--env", env, "--steps", str(steps), "--seed", "0", *extra, *pairs]


def rlhf(algo: str) -> list[str]:
    options = ["--iterations", "10", "--seed", "0", "--model", "{sft}/model"]
    return ["rlhf", "train", algo, *options, "--set", "log_every=1", "--set", "eval_every=5"]


SFT = ["rlhf", "sft", "--steps", "200", "--seed", "0", "--set", "log_every=20"]
CASES: dict[str, list[str]] = {
    "reinforce-CartPole": gym("reinforce", "CartPole-v1", 10_000),
    "reinforce_baseline-CartPole": gym("reinforce_baseline", "CartPole-v1", 10_000),
    "actor_critic-CartPole": gym("actor_critic", "CartPole-v1", 5_000),
    "a2c-CartPole-adam": gym("a2c", "CartPole-v1", 20_000, optimizer="adam"),
    "a2c-CartPole-rmsprop": gym("a2c", "CartPole-v1", 20_000, optimizer="rmsprop"),
    "a2c-Pendulum-gsde": gym("a2c", "Pendulum-v1", 16_000, std="gsde"),
    "ppo-CartPole": gym("ppo", "CartPole-v1", 10_000),
    "ppo-Pendulum": gym("ppo", "Pendulum-v1", 16_384, n_steps=256),
    "ppo-HalfCheetah": gym(
        "ppo", "HalfCheetah-v5", 8192, n_steps=512, batch_size=64, n_epochs=2, log_every=512
    ),
    # fast=false: acting, gradient and optimizer step all through torch (issue 17; the older
    # analytic_gradients=false, read as fast=false now, turned off the hand-written gradient only,
    # so this case differs from runs made before the rename by design).
    "ppo-CartPole-torch-only": gym("ppo", "CartPole-v1", 10_000, fast="false"),
    "ppo-Pendulum-clipvf-kl": gym(
        "ppo", "Pendulum-v1", 16_384, n_steps=256, clip_range_vf=0.2, target_kl=0.007
    ),
    "sac-Pendulum": gym("sac", "Pendulum-v1", 1500, learning_starts=200, log_every=100),
    "a3c-CartPole-w1": gym("a3c", "CartPole-v1", 20_000, "--workers", "1"),
    "a2c-CartPole-ray-w2": gym(
        "a2c", "CartPole-v1", 10_000, "--backend", "ray", "--workers", "2", optimizer="adam"
    ),
    "rlhf-sft": SFT,  # its model is the RLHF cases' ({sft})
    "rlhf-rloo": rlhf("rloo"),
    "rlhf-ppo": rlhf("ppo"),
    "rlhf-grpo": rlhf("grpo"),
}
# --device cpu must change nothing (issue 18): each of these is compared with its case above.
DEVICE_CPU = {
    f"{name}-device-cpu": [*CASES[name], "--device", "cpu"]
    for name in (
        "reinforce_baseline-CartPole",
        "a2c-CartPole-adam",
        "ppo-Pendulum",
        "sac-Pendulum",
        "rlhf-ppo",
        "rlhf-grpo",
    )
}
CASES.update(DEVICE_CPU)


def run(name: str, args: list[str], runs: Path, sft: Path, out: Path) -> str:
    """Train one case into ``runs/name``; copy its metrics.csv to ``out``; return a log line."""
    run_dir = runs / name
    args = [a.replace("{sft}", str(sft)) for a in args]
    command = [sys.executable, "-m", "pgrad", *args, "--run-dir", str(run_dir), "--no-progress"]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    line = f"{name}: rc={done.returncode} {seconds:.1f}s  {' '.join(command[1:])}"
    if done.returncode == 0:
        shutil.copyfile(run_dir / "metrics.csv", out / f"{name}.csv")
    else:
        line += "\n" + "\n".join("    " + s for s in done.stderr.splitlines()[-15:])
    print(line, flush=True)
    return line


def train(out: Path, names: list[str], jobs: int) -> int:
    out.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="pgrad-identity-") as tmp:
        runs = Path(tmp)
        sft = runs / "rlhf-sft"
        if any(n.startswith("rlhf-") for n in names):  # first: the RLHF cases' shared model
            lines.append(run("rlhf-sft", SFT, runs, sft, out))
            names = [n for n in names if n != "rlhf-sft"]
        with ThreadPoolExecutor(jobs) as pool:
            lines += pool.map(lambda n: run(n, CASES[n], runs, sft, out), names)
    (out / "commands.log").write_text("\n".join(lines) + "\n")
    return int(any(" rc=0 " not in line.split("\n")[0] for line in lines))


def compare(a: Path, b: Path) -> int:
    bad = 0
    pairs = [(name, a / f"{name}.csv", b / f"{name}.csv")
             for name in sorted({p.stem for p in [*a.glob("*.csv"), *b.glob("*.csv")]})
             if name not in DEVICE_CPU or (a / f"{name}.csv").is_file()]  # fmt: skip
    for name in DEVICE_CPU:  # within B: --device cpu against no --device
        if (b / f"{name}.csv").is_file():
            base = name.removesuffix("-device-cpu")
            pairs.append((f"{name} vs {base}", b / f"{base}.csv", b / f"{name}.csv"))
    for name, fa, fb in pairs:
        if not (fa.is_file() and fb.is_file()):
            verdict = f"missing in {a if not fa.is_file() else b}"
        elif fa.read_bytes() == fb.read_bytes():
            verdict = "identical"
        else:
            la, lb = fa.read_text().splitlines(), fb.read_text().splitlines()
            i = next((i for i, (x, y) in enumerate(zip(la, lb, strict=False)) if x != y), None)
            if i is None:
                i = min(len(la), len(lb))
            verdict = f"DIFFER ({len(la)} vs {len(lb)} lines) at line {i + 1}:"
            verdict += f"\n    A: {la[i] if i < len(la) else '<eof>'}"
            verdict += f"\n    B: {lb[i] if i < len(lb) else '<eof>'}"
        bad += verdict != "identical"
        print(f"{name}: {verdict}")
    return int(bad > 0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="Directory for NAME.csv and commands.log.")
    parser.add_argument("--only", nargs="+", choices=list(CASES), help="Cases to run.")
    parser.add_argument("--jobs", type=int, default=2, help="Runs at a time.")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("A", "B"))
    args = parser.parse_args()
    if args.compare:
        return compare(*args.compare)
    if args.out is None:
        parser.error("--out or --compare is required")
    return train(args.out, args.only or list(CASES), args.jobs)


if __name__ == "__main__":
    sys.exit(main())
