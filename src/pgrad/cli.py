"""The ``pgrad`` command: train, eval, export, record, report, plot, algos, tune, playground,
lab, rlhf.

Bad input (unknown algorithm or env, a bad config key or value, a missing or corrupt run
directory) prints one line, ``error: ...``, and exits with status 2.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pgrad.errors import PgradError
from pgrad.rlhf import commands as rlhf_commands

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Policy-gradient reinforcement learning: train, evaluate and compare agents.",
)
console = Console()


@app.command()
def train(
    algo: Annotated[str | None, typer.Argument(help="Algorithm name (see `pgrad algos`).")] = None,
    env: Annotated[str, typer.Option(help="Gymnasium env id.")] = "CartPole-v1",
    steps: Annotated[int | None, typer.Option(help="Environment steps to train for.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    config: Annotated[Path | None, typer.Option(help="YAML file of config keys.")] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a config key: key=value (repeatable)."),
    ] = None,
    run_dir: Annotated[
        Path | None, typer.Option(help="Where to write the run (default: runs/...).")
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    resume: Annotated[
        Path | None,
        typer.Option(help="Continue this run from its latest checkpoint (--steps may extend it)."),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(help="Rollout workers: A3C's processes, or Ray actors with --backend ray."),
    ] = None,
    backend: Annotated[
        str | None, typer.Option(help="local (default) or ray (A2C/PPO/A3C on Ray actors).")
    ] = None,
    ray_address: Annotated[
        str | None, typer.Option(help="Join this Ray cluster (default: start a local Ray).")
    ] = None,
    device: Annotated[
        str | None,
        typer.Option(help="auto (default), cpu, cuda or cuda:N: where the learner runs."),
    ] = None,
    vec: Annotated[
        str | None,
        typer.Option(help="Vector env: auto, sync, async or envpool (config key vectorization)."),
    ] = None,
) -> None:
    """Train ALGO on an env; ends with an evaluation and a learning-curve plot."""
    from pgrad.train import train as run_training

    options = {"workers": workers, "backend": backend, "ray_address": ray_address,
               "vectorization": vec}  # fmt: skip
    overrides = {k: v for k, v in options.items() if v is not None}
    if resume is not None and (config or set_ or run_dir or seed is not None or overrides):
        raise PgradError(
            "--resume continues a run as configured; it takes only --steps and --device"
        )
    if algo is None and resume is None:
        raise PgradError("train needs an algorithm (see `pgrad algos`), or --resume RUN_DIR")
    if device is not None:
        overrides["device"] = device
    run = run_training(
        algo,
        env,
        steps=steps,
        seed=seed,
        config=config,
        run_dir=run_dir,
        sets=set_ or (),
        progress=progress,
        resume=resume,
        **overrides,
    )
    summary = run.summary
    if "interrupted" in summary:
        console.print(
            f"interrupted by {summary['interrupted']} at step {summary['steps']:,}; "
            f"checkpoint saved in {run.path / 'checkpoints'}"
        )
        raise typer.Exit(130 if summary["interrupted"] == "SIGINT" else 143)
    console.print(
        f"[bold]{summary['algo']}[/] on [bold]{summary['env']}[/]: evaluation return "
        f"[bold green]{summary['mean_return']:.1f} ± {summary['std_return']:.1f}[/] over "
        f"{summary['episodes']} episodes after {summary['steps']:,} steps "
        f"({summary['wall_time_s']:.0f} s, {summary['sps']:,.0f} steps/s)"
    )
    console.print(f"run directory: {run.path}")
    console.print(f"learning curve: {run.path / 'learning_curve.png'}")


@app.command("eval")
def evaluate(
    run_dir: Annotated[Path, typer.Argument(help="A run directory.")],
    episodes: Annotated[int, typer.Option(min=1, help="Episodes to run.")] = 10,
    seed: Annotated[int | None, typer.Option(help="Seed of the evaluation envs.", min=0)] = None,
    stochastic: Annotated[bool, typer.Option(help="Sample actions instead of the mode.")] = False,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Evaluate the latest checkpoint of a run."""
    from pgrad.agent import load

    agent = load(run_dir)
    returns = agent.evaluate(episodes, seed, deterministic=not stochastic)
    result = {
        "mean_return": float(returns.mean()),
        "std_return": float(returns.std()),
        "episodes": len(returns),
        "steps": agent.step,
        "returns": [float(r) for r in returns],
    }
    if json_:
        print(json.dumps(result))
    else:
        console.print(
            f"{agent.algo} on {agent.env_id} at step {agent.step:,}: "
            f"return {result['mean_return']:.1f} ± {result['std_return']:.1f} "
            f"over {episodes} episodes"
        )


@app.command("export")
def export_policy(
    run_dir: Annotated[Path, typer.Argument(help="A run directory.")],
    format_: Annotated[
        str, typer.Option("--format", help="pt2 (torch.export) or onnx (needs pgrad\\[export]).")
    ] = "pt2",
    out: Annotated[Path | None, typer.Option(help="File to write (default: in RUN_DIR).")] = None,
) -> None:
    """Export the latest policy: observations (normalisation included) -> deterministic actions."""
    from pgrad.export import export

    console.print(f"wrote {export(run_dir, format_, out)}")  # type: ignore[arg-type]


@app.command()
def record(
    run_dir: Annotated[Path, typer.Argument(help="A run directory.")],
    out: Annotated[
        Path, typer.Option(help="video.gif, or video.mp4 (needs pgrad\\[video]).")
    ] = Path("video.gif"),
    episodes: Annotated[int, typer.Option(min=1, help="Episodes to record.")] = 1,
    seed: Annotated[int | None, typer.Option(help="Seed of the first episode.", min=0)] = None,
    stochastic: Annotated[bool, typer.Option(help="Sample actions instead of the mode.")] = False,
) -> None:
    """Render episodes of the latest policy to a GIF or MP4."""
    from pgrad.record import record as record_video

    path, returns = record_video(run_dir, out, episodes, seed, stochastic)
    console.print(
        f"wrote {path} ({len(returns)} episodes, returns {[round(r, 1) for r in returns]})"
    )


@app.command()
def report(
    run_dirs: Annotated[list[Path], typer.Argument(help="Run directories (grouped by algo/env).")],
    out: Annotated[Path, typer.Option(help="HTML file to write.")] = Path("report.html"),
    video: Annotated[bool, typer.Option(help="Embed a GIF of each group's best run.")] = False,
) -> None:
    """A self-contained HTML page: learning curves, evaluation table, config, video."""
    from pgrad.report import report as write_report

    console.print(f"wrote {write_report(run_dirs, out, video)}")


@app.command()
def plot(
    run_dirs: Annotated[
        list[Path], typer.Argument(help="Run directories (runs of one algo and env are averaged).")
    ],
    out: Annotated[Path, typer.Option(help="PNG file to write.")] = Path("learning_curve.png"),
    metric: Annotated[str, typer.Option(help="Column of metrics.csv to plot.")] = "episode_return",
) -> None:
    """Plot learning curves: mean and spread across runs."""
    from pgrad.plot import plot_runs
    from pgrad.runs import Run

    runs = [Run.open(d) for d in run_dirs]
    console.print(f"wrote {plot_runs(runs, out, metric)}")


@app.command()
def algos(
    name: Annotated[
        str | None, typer.Argument(help="Show every config key of this algorithm.")
    ] = None,
) -> None:
    """List algorithms and their default configs."""
    from pgrad import algos as registry
    from pgrad.config import keys, shipped_table

    if name is None:
        table = Table("algorithm", "what it is")
        for spec in registry.ALGOS.values():
            table.add_row(spec.name, spec.summary)
        console.print(table)
        console.print("`pgrad algos NAME` lists its config keys and defaults.")
        return
    spec = registry.get(name)
    defaults = {**{f.name: f.default for f in dataclasses.fields(spec.config_cls)}, **spec.preset}
    table = Table("key", "type", "default", title=f"{name}: {spec.summary}")
    for key, kind in keys(spec.config_cls).items():
        kind_name = kind.__name__ if isinstance(kind, type) else str(kind).replace("typing.", "")
        table.add_row(key, kind_name, repr(defaults[key]))
    console.print(table)
    for env_id, values in shipped_table(name).items():
        settings = ", ".join(f"{k}={v}" for k, v in values.items())
        console.print(f"--env {env_id} overrides (defaults.yaml): {settings}")


@app.command()
def tune(
    algo: Annotated[str, typer.Argument(help="Algorithm name (see pgrad/search_spaces.py).")],
    env: Annotated[str, typer.Option(help="Gymnasium env id.")] = "CartPole-v1",
    trials: Annotated[int, typer.Option(help="Complete + pruned trials the study ends at.")] = 20,
    steps: Annotated[
        int | None, typer.Option(help="Env steps per trial (default: the config's steps).")
    ] = None,
    jobs: Annotated[int, typer.Option(help="Trials at once (worker processes).")] = 1,
    out: Annotated[
        Path | None,
        typer.Option(help="Study directory (default runs/tune-ALGO-ENV); rerun to resume."),
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Seed of the sampler and of every trial.")
    ] = None,
) -> None:
    """Search ALGO's hyperparameters with Optuna (TPE, median pruning; the tune extra)."""
    from pgrad.tune import table
    from pgrad.tune import tune as run_tune

    try:
        tuned = run_tune(algo, env, trials, steps, jobs, out, seed)
    except KeyboardInterrupt:
        console.print("interrupted; run the same command again to continue the study")
        raise typer.Exit(130) from None
    console.print(table(tuned.study))
    if tuned.best is None:
        console.print("no trial completed (all were pruned); no best.yaml")
    else:
        best = tuned.study.best_trial
        console.print(f"best: trial {best.number}, evaluation return {best.value:.1f}")
        console.print(f"best config: {tuned.best}")
    console.print(f"trials plot: {tuned.plot}")


@app.command()
def playground(
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8765,
    host: Annotated[
        str, typer.Option(help="Address to bind (other than 127.0.0.1: reachable by others).")
    ] = "127.0.0.1",
    root: Annotated[
        Path, typer.Option(help="Directory the playground's run directories go under.")
    ] = Path("runs/playground"),
    max_runs: Annotated[int, typer.Option(min=1, help="Runs training at once, at most.")] = 4,
) -> None:
    """A local web page to watch a policy gradient learn (the playground extra)."""
    try:
        from pgrad.playground.server import serve
    except ModuleNotFoundError as e:
        if e.name not in ("fastapi", "uvicorn", "starlette", "pydantic"):
            raise
        raise PgradError(
            "pgrad playground needs its extra: pip install 'pgrad[playground]'"
        ) from None
    serve(host, port, root, max_runs)


lab = typer.Typer(
    no_args_is_help=True, help="Experiments that measure policy-gradient theory (docs/lab.md)."
)
app.add_typer(lab, name="lab")
app.add_typer(rlhf_commands.rlhf, name="rlhf")
TABULAR = ("random-mdp", "short-corridor")


@lab.command("variance")
def lab_variance(
    env: Annotated[
        str, typer.Option(help=f"A Gymnasium env id, or a tabular MDP: {', '.join(TABULAR)}.")
    ] = "CartPole-v1",
    checkpoint: Annotated[
        Path | None,
        typer.Option(help="Run directory of the policy (default: a brief reinforce_baseline)."),
    ] = None,
    samples: Annotated[
        int | None, typer.Option(min=10, help="Episodes per estimator (default 500; tabular 20k).")
    ] = None,
    reference: Annotated[
        int, typer.Option(min=10, help="Gym envs: episodes of the reference gradient.")
    ] = 1500,
    train_steps: Annotated[
        int, typer.Option(min=1, help="Steps of the default partially trained policy.")
    ] = 20_000,
    seed: Annotated[int, typer.Option(help="Random seed.", min=0)] = 0,
    out: Annotated[Path, typer.Option(help="Directory for results.json and the plot.")] = Path(
        "lab/variance"
    ),
) -> None:
    """Bias and variance of gradient estimators at a fixed policy (table and plot)."""
    import numpy as np

    from pgrad.lab import tabular, variance
    from pgrad.runs import Run, output_folder

    output_folder(out)
    if env in TABULAR:
        if checkpoint is not None:
            raise PgradError("--checkpoint is for gym envs; a tabular MDP uses a random policy")
        mdp = tabular.random_mdp(seed) if env == "random-mdp" else tabular.short_corridor()
        theta = np.random.default_rng(seed).normal(size=(mdp.n_states, mdp.n_actions))
        rows, info = variance.tabular_table(mdp, theta, samples or 20_000, seed)
    else:
        from pgrad.envs import check_env_id

        check_env_id(env)
        if checkpoint is not None and (trained_on := Run.open(checkpoint).config["env"]) != env:
            raise PgradError(f"--checkpoint {str(checkpoint)!r} was trained on {trained_on!r}, "
                             f"not --env {env!r}")  # fmt: skip
        if checkpoint is None:
            from pgrad.train import train as run_training

            console.print(f"training reinforce_baseline on {env} for {train_steps:,} steps...")
            checkpoint = out / "policy"
            run_training("reinforce_baseline", env, steps=train_steps, seed=seed,
                         run_dir=checkpoint)  # fmt: skip
        rows, info = variance.gym_table(env, checkpoint, samples or 500, reference, seed)
    variance.write(out, rows, info)
    console.print(variance.format_table(rows), markup=False)
    by_name = {r.estimator: r for r in rows}
    for name in ("reward-to-go - V", "GAE(0.95)"):
        factor = 1 / by_name[name].variance_vs_reinforce
        console.print(f"variance reduction of {name} over REINFORCE: {factor:.1f}x")
    console.print(f"results: {out / 'results.json'}, plot: {out / 'bias_variance.png'}")


@lab.command("rps")
def lab_rps(
    rounds: Annotated[int, typer.Option(min=10, help="Rounds of 32 games each.")] = 3000,
    seed: Annotated[int, typer.Option(help="Random seed.", min=0)] = 0,
    out: Annotated[Path, typer.Option(help="Directory for results.json and the plot.")] = Path(
        "lab/rps"
    ),
) -> None:
    """Rock-paper-scissors against an exploiting opponent: softmax PG vs a greedy learner."""
    from pgrad.lab import rps
    from pgrad.runs import output_folder

    results = rps.run(output_folder(out), rounds, seed)
    pg, greedy = results["policy_gradient"], results["greedy"]
    console.print(
        f"policy gradient: final policy {pg['final_policy']}, exploitability "
        f"{pg['exploitability_last_10pct']:.4f} (last 10% of rounds)"
    )
    console.print(f"greedy: exploitability {greedy['exploitability_last_10pct']:.4f}")
    console.print(f"results: {out / 'results.json'}, plot: {out / 'rps.png'}")


# Click's exception classes, found from typer's public ones: newer typer vendors its own click.
_UsageError, _ClickException = (
    next(c for c in typer.BadParameter.__mro__ if c.__name__ == name)
    for name in ("UsageError", "ClickException")
)


def main() -> None:
    try:
        code = app(standalone_mode=False)
    except PgradError as e:
        _error(str(e))
    except _UsageError as e:
        if type(e).__name__ == "NoArgsIsHelpError":  # bare `pgrad` or `pgrad rlhf`: the help
            e.show()
            sys.exit(e.exit_code)
        # A bad option value, a missing or extra argument: one line, not a usage box.
        where = f"{e.ctx.command_path}: " if e.ctx is not None else ""
        _error(f"{where}{e.format_message()}{_given(e)} (see --help)")
    except _ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except typer.Abort:
        Console(stderr=True).print("Aborted.")
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


def _given(e: Exception) -> str:
    """ ", got VALUE" where typer's message leaves the value out (its pydantic coercion's)."""
    errors = getattr(e.__cause__, "errors", None)
    return f", got {errors()[0]['input']!r}" if callable(errors) and errors() else ""


def _error(text: str) -> None:
    """``error: TEXT`` on one line of stderr, and exit status 2."""
    # escape: messages quote user input and extras like '.[ray]', which are not markup.
    message = f"[red]error:[/] {escape(' '.join(text.split()))}"
    Console(stderr=True).print(message, highlight=False, soft_wrap=True)
    sys.exit(2)
