"""The standard suite: every (algo, env) of the shipped defaults, a few seeds each, at its budget.

    python benchmarks/suite.py --out suite                  # everything (days on 2 cores)
    python benchmarks/suite.py --out suite --envs '*-v5' --algos ppo --jobs 16 --time-limit 540
    python benchmarks/suite.py --out suite --list            # the rows, budgets and launch order

A row is (algo, env) for an env of Gymnasium 1.4's classic-control, Box2D and MuJoCo v5
registries that has an entry in ``src/pgrad/defaults.yaml``; a run is a row with one seed, trained
by ``python -m pgrad train ALGO --env ENV --seed S`` (shipped defaults, one torch thread, its
budget ``steps``) in a process of its own, ``--jobs`` at a time. The seeds (100, 101, 102) are
not the ones any default was tuned on (0-2). Each run's figure is its final evaluation (the mean
return of ``eval_episodes`` deterministic episodes, ``summary.json``); a row's is the mean ± std
(population) of those over seeds.

- ``--max-steps N`` skips the rows whose budget is larger ("not run"); with ``--cap`` they run at
  N steps instead, and the table says "capped" beside the budget and the status.
- ``--time-limit S``: after S seconds nothing new starts and the runs still going get SIGINT
  (pgrad checkpoints and stops); they are listed as interrupted, and the next call with the same
  ``--out`` resumes them from their checkpoint (``pgrad train --resume``). Leave a minute for
  that within a hard wall-clock limit (``--time-limit 540`` for a 10-minute call).
- Results go to ``OUT/results.json`` after every finished run, so a call that is cut off keeps
  what finished; finished runs are never run again. The table goes to ``OUT/suite.md`` and
  stdout.
- ``--eval-episodes N``: each finished run is also evaluated on N deterministic episodes by
  ``pgrad eval RUN --episodes N --seed 1000000`` (the same seed for every run, so every run of an
  env starts its episodes from the same states), once, kept in ``results.json``; the table's
  figure is then that evaluation. Training's own final evaluation is 10 episodes (each run's
  ``eval_episodes``): where returns vary from episode to episode that leaves much noise in a
  seed's figure (A2C on Pendulum: std 74-114 per episode, so ~30 on a 10-episode mean). A call
  on an ``--out`` whose runs are done evaluates them without training anything.
- Runs start cheapest first (budget x a rough cost per step: SAC's gradient step per env step
  and a CNN on pixels cost far more than PPO's MLP), so a time-limited call fills as many rows
  as it can.

Table: env, algo, budget, pgrad's figure, rl-zoo's published figure (``RL_ZOO``: its
``benchmark.md`` at DLR-RM/rl-baselines3-zoo commit 22e3ff2, nearest env version, its own
budget), the "solved" threshold (Gymnasium's ``reward_threshold``, else rl-zoo's figure) and a
status: "solved" (every seed's figure at or above the threshold), "below" (how many seeds are),
"not run"; "k of n seeds" where some are missing.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CLASSIC = ["CartPole-v1", "Acrobot-v1", "MountainCar-v0", "MountainCarContinuous-v0", "Pendulum-v1"]
BOX2D = [
    "LunarLander-v3",
    "LunarLanderContinuous-v3",
    "BipedalWalker-v3",
    "BipedalWalkerHardcore-v3",
    "CarRacing-v3",
]
MUJOCO = [
    f"{name}-v5"
    for name in [
        "Ant", "HalfCheetah", "Hopper", "Humanoid", "HumanoidStandup", "InvertedDoublePendulum",
        "InvertedPendulum", "Pusher", "Reacher", "Swimmer", "Walker2d",
    ]
]  # fmt: skip
SUITE_ENVS = CLASSIC + BOX2D + MUJOCO
SUITE_ALGOS = ["ppo", "sac", "a2c", "reinforce_baseline"]
PIXEL_ENVS = {"CarRacing-v3"}

COST_PER_STEP = {"reinforce": 0.5, "reinforce_baseline": 0.5, "a2c": 0.5, "ppo": 1.0, "sac": 15.0}
"""Rough wall time per env step, relative to PPO with an MLP (launch order only)."""
PIXEL_COST = 20.0

RL_ZOO: dict[tuple[str, str], tuple[float, str]] = {
    # (algo, env): (mean_reward, "<its row in rl-zoo's benchmark.md>, <its n_timesteps>")
    ("ppo", "CartPole-v1"): (500.000, "ppo CartPole-v1, 100k"),
    ("ppo", "Acrobot-v1"): (-73.506, "ppo Acrobot-v1, 1M"),
    ("ppo", "MountainCar-v0"): (-110.423, "ppo MountainCar-v0, 1M"),
    ("ppo", "MountainCarContinuous-v0"): (88.343, "ppo MountainCarContinuous-v0, 20k"),
    ("ppo", "Pendulum-v1"): (-172.225, "ppo Pendulum-v1, 100k"),
    ("ppo", "LunarLander-v3"): (242.119, "ppo LunarLander-v2, 1M"),
    ("ppo", "LunarLanderContinuous-v3"): (270.863, "ppo LunarLanderContinuous-v2, 1M"),
    ("ppo", "BipedalWalker-v3"): (287.939, "ppo BipedalWalker-v3, 5M"),
    ("ppo", "BipedalWalkerHardcore-v3"): (122.374, "ppo BipedalWalkerHardcore-v3, 100M"),
    ("ppo", "CarRacing-v3"): (153.938, "ppo CarRacing-v0, 4M"),
    ("ppo", "Ant-v5"): (1327.158, "ppo Ant-v3, 1M"),
    ("ppo", "HalfCheetah-v5"): (5819.099, "ppo HalfCheetah-v3, 1M"),
    ("ppo", "Hopper-v5"): (2410.435, "ppo Hopper-v3, 1M"),
    ("ppo", "Swimmer-v5"): (281.561, "ppo Swimmer-v3, 1M"),
    ("ppo", "Walker2d-v5"): (3478.798, "ppo Walker2d-v3, 1M"),
    ("sac", "MountainCarContinuous-v0"): (94.679, "sac MountainCarContinuous-v0, 50k"),
    ("sac", "Pendulum-v1"): (-156.995, "sac Pendulum-v1, 20k"),
    ("sac", "LunarLanderContinuous-v3"): (260.390, "sac LunarLanderContinuous-v2, 500k"),
    ("sac", "BipedalWalker-v3"): (297.668, "sac BipedalWalker-v3, 500k"),
    ("sac", "BipedalWalkerHardcore-v3"): (4.423, "sac BipedalWalkerHardcore-v3, 10M"),
    ("sac", "Ant-v5"): (4615.791, "sac Ant-v3, 1M"),
    ("sac", "HalfCheetah-v5"): (9535.451, "sac HalfCheetah-v3, 1M"),
    ("sac", "Hopper-v5"): (2325.547, "sac Hopper-v3, 1M"),
    ("sac", "Humanoid-v5"): (6232.287, "sac Humanoid-v3, 2M"),
    ("sac", "Swimmer-v5"): (345.568, "sac Swimmer-v3, 1M"),
    ("sac", "Walker2d-v5"): (3863.203, "sac Walker2d-v3, 1M"),
    ("a2c", "CartPole-v1"): (500.000, "a2c CartPole-v1, 500k"),
    ("a2c", "Acrobot-v1"): (-83.353, "a2c Acrobot-v1, 500k"),
    ("a2c", "MountainCar-v0"): (-111.263, "a2c MountainCar-v0, 1M"),
    ("a2c", "MountainCarContinuous-v0"): (91.166, "a2c MountainCarContinuous-v0, 100k"),
    ("a2c", "Pendulum-v1"): (-162.965, "a2c Pendulum-v1, 1M"),
}
"""rl-zoo's published figures; it has none for the rows missing here (REINFORCE, and PPO/SAC on
several MuJoCo envs)."""


EVAL_SEED = 1_000_000
"""The seed of ``--eval-episodes``' evaluations, the same for every run."""


@dataclass(frozen=True)
class Run:
    algo: str
    env: str
    seed: int
    steps: int
    budget: int

    @property
    def key(self) -> str:
        return f"{self.algo}/{self.env}/seed{self.seed}/steps{self.steps}"

    @property
    def name(self) -> str:
        return f"{self.algo}-{self.env}-s{self.seed}-{self.steps}"

    @property
    def capped(self) -> bool:
        return self.steps < self.budget

    def cost(self) -> float:
        pixels = PIXEL_COST if self.env in PIXEL_ENVS else 1.0
        return self.steps * COST_PER_STEP.get(self.algo, 1.0) * pixels


def matches(name: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def suite_rows(algos: list[str], envs: list[str]) -> list[tuple[str, str, int]]:
    """(algo, env, budget) for every suite env with a shipped entry, in the suite's order; the
    budget is the ``steps`` that ``pgrad train ALGO --env ENV`` resolves to."""
    from pgrad.algos import ALGOS
    from pgrad.config import build, shipped_table

    names = [a for a in SUITE_ALGOS + sorted(set(ALGOS) - set(SUITE_ALGOS)) if matches(a, algos)]
    tables = {algo: shipped_table(algo) for algo in names}
    rows = []
    for env in filter(lambda e: matches(e, envs), SUITE_ENVS):
        for algo in (a for a in names if env in tables[a]):
            spec = ALGOS[algo]
            config = build(spec.config_cls, [spec.preset, tables[algo][env]], algo)
            rows.append((algo, env, config.steps))
    return rows


def plan(
    rows: list[tuple[str, str, int]], seeds: list[int], max_steps: int | None, cap: bool
) -> tuple[list[Run], dict[tuple[str, str], str]]:
    """The runs to do, cheapest first, and why the other rows are not run."""
    runs, skipped = [], {}
    for algo, env, budget in rows:
        steps = budget
        if max_steps is not None and budget > max_steps:
            if not cap:
                skipped[(algo, env)] = f"not run (budget > --max-steps {max_steps:,})"
                continue
            steps = max_steps
        runs += [Run(algo, env, seed, steps, budget) for seed in seeds]
    return sorted(runs, key=Run.cost), skipped


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {"runs": {}}


def save(path: Path, results: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1, sort_keys=True))
    tmp.replace(path)


def command(run: Run, run_dir: Path) -> list[str]:
    """``pgrad train`` for ``run``: resumed from its checkpoint where an earlier call left one."""
    pgrad = [sys.executable, "-m", "pgrad", "train"]
    if list(run_dir.glob("checkpoints/step-*.pt")):
        return [*pgrad, "--resume", str(run_dir), "--steps", str(run.steps), "--no-progress"]
    shutil.rmtree(run_dir, ignore_errors=True)
    return [*pgrad, run.algo, "--env", run.env, "--seed", str(run.seed), "--steps",
            str(run.steps), "--run-dir", str(run_dir), "--no-progress"]  # fmt: skip


def single_threaded() -> dict[str, str]:
    threads = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
    return {**os.environ, **dict.fromkeys(threads, "1")}


def finished(run: Run, run_dir: Path, returncode: int) -> dict[str, Any]:
    """The result of a run whose process ended: its summary, or why there is none."""
    record = {"algo": run.algo, "env": run.env, "seed": run.seed, "steps": run.steps,
              "budget": run.budget, "returncode": returncode, "run_dir": str(run_dir)}  # fmt: skip
    summary_path = run_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    if returncode == 0 and summary.get("mean_return") is not None:
        keys = ("mean_return", "std_return", "episodes", "wall_time_s", "train_time_s", "sps")
        return {**record, **{k: summary[k] for k in keys}, "status": "done"}
    interrupted = (
        returncode in (130, 143, -signal.SIGINT, -signal.SIGKILL) or "interrupted" in summary
    )
    return {**record, "status": "interrupted" if interrupted else "failed",
            "steps_done": summary.get("steps")}  # fmt: skip


def execute(
    runs: list[Run], out: Path, runs_dir: Path, jobs: int, time_limit: float | None, grace: float
) -> dict[str, Any]:
    """Run ``runs`` ``jobs`` at a time; returns (and keeps saving) every run's record."""
    results_path = out / "results.json"
    results = load(results_path)
    todo = [r for r in runs if results["runs"].get(r.key, {}).get("status") != "done"]
    print(
        f"{len(runs) - len(todo)} of {len(runs)} runs already done; {len(todo)} to run", flush=True
    )
    (out / "logs").mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    running: dict[subprocess.Popen, tuple[Run, Path, Any]] = {}
    stopping = False
    while todo or running:
        late = time_limit is not None and time.monotonic() - start > time_limit
        if late and not stopping:
            stopping = True
            print(
                f"time limit: {len(todo)} runs not started, {len(running)} interrupted", flush=True
            )
            for process in running:
                process.send_signal(signal.SIGINT)
            deadline = time.monotonic() + grace
        if stopping:
            todo = []
            if time.monotonic() > deadline:
                for process in running:
                    process.kill()
        while todo and len(running) < jobs:
            run = todo.pop(0)
            run_dir = runs_dir / run.name
            log = open(out / "logs" / f"{run.name}.log", "a")  # noqa: SIM115 (closed below)
            process = subprocess.Popen(
                command(run, run_dir), stdout=log, stderr=subprocess.STDOUT, env=single_threaded()
            )
            running[process] = (run, run_dir, log)
        for process in [p for p in running if p.poll() is not None]:
            run, run_dir, log = running.pop(process)
            log.close()
            record = finished(run, run_dir, process.returncode)
            results["runs"][run.key] = record
            save(results_path, results)
            figure = f"{record['mean_return']:.1f}" if record["status"] == "done" else ""
            elapsed = time.monotonic() - start
            print(f"[{elapsed:6.0f} s] {run.key}: {record['status']} {figure}", flush=True)
        time.sleep(0.2)
    return results


def evaluation_command(run_dir: Path, episodes: int) -> list[str]:
    return [sys.executable, "-m", "pgrad", "eval", str(run_dir), "--episodes", str(episodes),
            "--seed", str(EVAL_SEED), "--json"]  # fmt: skip


def evaluate_runs(runs: list[Run], out: Path, episodes: int, jobs: int) -> dict[str, Any]:
    """Evaluate every done run of ``runs`` on ``episodes`` deterministic episodes, once each:
    kept as ``record["evaluations"][str(episodes)]`` in ``OUT/results.json``."""
    results_path = out / "results.json"
    results = load(results_path)
    todo = [
        results["runs"][r.key] for r in runs
        if results["runs"].get(r.key, {}).get("status") == "done"
        and str(episodes) not in results["runs"][r.key].get("evaluations", {})
    ]  # fmt: skip
    print(f"{len(todo)} runs to evaluate on {episodes} episodes", flush=True)

    def evaluate(record: dict[str, Any]) -> subprocess.CompletedProcess:
        command = evaluation_command(Path(record["run_dir"]), episodes)
        return subprocess.run(command, capture_output=True, text=True, env=single_threaded())

    with ThreadPoolExecutor(jobs) as pool:
        for record, process in zip(todo, pool.map(evaluate, todo), strict=True):
            name = f"{record['algo']}/{record['env']}/seed{record['seed']}"
            if process.returncode != 0:
                print(f"{name}: evaluation failed: {process.stderr.strip()[-300:]}", flush=True)
                continue
            result = json.loads(process.stdout.strip().splitlines()[-1])
            kept = {k: result[k] for k in ("mean_return", "std_return", "episodes", "steps")}
            record.setdefault("evaluations", {})[str(episodes)] = {**kept, "seed": EVAL_SEED}
            save(results_path, results)
            print(f"{name}: {kept['mean_return']:.1f} on {episodes} episodes", flush=True)
    return results


def figure(record: dict[str, Any], eval_episodes: int | None) -> float | None:
    """A done run's figure: its ``eval_episodes``-episode evaluation where asked for (None if it
    has none), else training's final evaluation."""
    if eval_episodes is None:
        return record["mean_return"]
    evaluation = record.get("evaluations", {}).get(str(eval_episodes))
    return None if evaluation is None else evaluation["mean_return"]


def threshold(algo: str, env: str) -> tuple[float | None, str]:
    """Gymnasium's ``reward_threshold``, else rl-zoo's figure; and how the table shows it."""
    import gymnasium as gym

    spec_threshold = gym.spec(env).reward_threshold
    if spec_threshold is not None:
        return float(spec_threshold), f"{spec_threshold:g} (Gymnasium)"
    if (algo, env) in RL_ZOO:
        return RL_ZOO[(algo, env)][0], f"{RL_ZOO[(algo, env)][0]:.1f} (rl-zoo)"
    return None, "none"


def status(
    figures: list[float], bar: float | None, seeds: int, capped: bool, unfinished: set[str]
) -> str:
    """ "solved" where every seed's figure reaches ``bar``, else "below" (how many do); runs
    "failed" or "interrupted" (resumed by the next call) said so."""
    if not figures:
        text = "not run"
    elif bar is None:
        text = "no threshold"
    elif all(f >= bar for f in figures):
        text = "solved"
    else:
        text = f"below ({sum(f >= bar for f in figures)} of {len(figures)} seeds at the bar)"
    if figures and len(figures) < seeds:
        text += f"; {len(figures)} of {seeds} seeds"
    text += "".join(f"; {kind} runs" for kind in sorted(unfinished))
    return text + ("; capped" if capped and figures else "")


def table(
    rows: list[tuple[str, str, int]],
    results: dict[str, Any],
    seeds: list[int],
    max_steps: int | None,
    cap: bool,
    skipped: dict[tuple[str, str], str],
    eval_episodes: int | None = None,
) -> str:
    """The Markdown table: one line per row, "not run" where no seed finished."""
    evaluation = (
        "final evaluation"
        if eval_episodes is None
        else f"evaluation of the final policy on {eval_episodes} episodes "
        f"(`pgrad eval RUN --episodes {eval_episodes} --seed {EVAL_SEED}`)"
    )
    lines = [
        f"Seeds {', '.join(map(str, seeds))}; {evaluation}, mean ± std over seeds "
        "(population std), per-seed values in brackets.",
        "",
        "| env | algo | budget | pgrad | rl-zoo (benchmark.md) | solved at | status |",
        "|---|---|---|---|---|---|---|",
    ]
    for algo, env, budget in rows:
        steps = min(budget, max_steps) if cap and max_steps is not None else budget
        tried = [
            r for r in results["runs"].values()
            if r["algo"] == algo and r["env"] == env and r["steps"] == steps and r["seed"] in seeds
        ]  # fmt: skip
        done = [r for r in tried if r["status"] == "done"]
        unfinished = {r["status"] for r in tried} - {"done"}
        if any(figure(r, eval_episodes) is None for r in done):
            unfinished.add("unevaluated")
        figures = [
            f for r in sorted(done, key=lambda r: r["seed"])
            if (f := figure(r, eval_episodes)) is not None
        ]  # fmt: skip
        pgrad = ""
        if figures:
            per_seed = ", ".join(f"{f:.1f}" for f in figures)
            mean, std = statistics.fmean(figures), statistics.pstdev(figures)
            pgrad = f"{mean:.1f} ± {std:.1f} [{per_seed}]"
        zoo = RL_ZOO.get((algo, env))
        bar, bar_text = threshold(algo, env)
        cells = [
            env,
            algo,
            f"{steps:,} (capped; budget {budget:,})" if steps < budget else f"{budget:,}",
            pgrad,
            f"{zoo[0]:.1f} ({zoo[1]})" if zoo else "none",
            bar_text,
            skipped.get((algo, env))
            or status(figures, bar, len(seeds), steps < budget, unfinished),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="results.json, suite.md, logs/")
    parser.add_argument("--runs-dir", type=Path, help="run directories (default OUT/runs)")
    parser.add_argument("--algos", nargs="+", default=SUITE_ALGOS, help="fnmatch patterns")
    parser.add_argument("--envs", nargs="+", default=["*"], help="fnmatch patterns")
    parser.add_argument("--seeds", nargs="+", type=int, default=[100, 101, 102])
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--max-steps", type=int, help="skip rows whose budget is larger")
    parser.add_argument(
        "--cap", action="store_true", help="with --max-steps: run those rows at that many steps"
    )
    parser.add_argument(
        "--eval-episodes", type=int, help="evaluate each finished run on N episodes (its figure)"
    )
    parser.add_argument("--time-limit", type=float, help="seconds; then start nothing new")
    parser.add_argument("--grace", type=float, default=60.0, help="seconds to let SIGINT finish")
    parser.add_argument("--list", action="store_true", help="print the runs in launch order")
    parser.add_argument("--table-only", action="store_true", help="the table of OUT's results")
    args = parser.parse_args(argv)
    if any(n is not None and n < 1 for n in (args.jobs, args.max_steps, args.eval_episodes)):
        parser.error("--jobs, --max-steps and --eval-episodes must be >= 1")
    if args.cap and args.max_steps is None:
        parser.error("--cap needs --max-steps")

    rows = suite_rows(args.algos, args.envs)
    if not rows:
        parser.error("no (algo, env) row matches --algos and --envs")
    runs, skipped = plan(rows, args.seeds, args.max_steps, args.cap)
    if args.list:
        for run in runs:
            print(f"{run.key}  budget {run.budget:,}  cost {run.cost():,.0f}")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    if args.table_only:
        results = load(args.out / "results.json")
    else:
        runs_dir = args.runs_dir or args.out / "runs"
        results = execute(runs, args.out, runs_dir, args.jobs, args.time_limit, args.grace)
        results["meta"] = {
            "host": platform.node(),
            "cpus": os.cpu_count(),
            "jobs": args.jobs,
            "python": platform.python_version(),
            "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        save(args.out / "results.json", results)
        if args.eval_episodes is not None:
            results = evaluate_runs(runs, args.out, args.eval_episodes, args.jobs)
    markdown = table(
        rows, results, args.seeds, args.max_steps, args.cap, skipped, args.eval_episodes
    )
    (args.out / "suite.md").write_text(markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
