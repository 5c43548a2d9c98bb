"""``pgrad rlhf sft|reward|train|sample``: the command-line face of ``pipeline``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console

from pgrad.errors import PgradError

rlhf = typer.Typer(
    no_args_is_help=True,
    help="RLHF on a language model: SFT, a reward model, REINFORCE/RLOO/PPO/GRPO, KL to the SFT.",
)
console = Console()

SetOption = Annotated[
    list[str] | None, typer.Option("--set", help="Override a config key: key=value (repeatable).")
]
ConfigOption = Annotated[Path | None, typer.Option(help="YAML file of config keys.")]
SeedOption = Annotated[int | None, typer.Option(help="Random seed.", min=0)]
ProgressOption = Annotated[bool, typer.Option(help="Show a progress bar.")]
RunDirOption = Annotated[
    Path | None, typer.Option(help="Where to write the run (default: runs/...).")
]


def _require_transformers() -> None:
    try:
        import transformers  # noqa: F401
    except ImportError:
        raise PgradError(
            "pgrad rlhf needs Hugging Face transformers: pip install -e '.[rlhf]'"
        ) from None


def _layers(config: Path | None, sets: list[str] | None, **explicit: Any) -> list[dict[str, Any]]:
    from pgrad import config as cfg

    explicit_layer = {k: v for k, v in explicit.items() if v is not None}
    return [*cfg.user_layers(config, sets or ()), explicit_layer]


@rlhf.command("sft")
def sft_command(
    steps: Annotated[int | None, typer.Option(help="Gradient steps.")] = None,
    seed: SeedOption = None,
    config: ConfigOption = None,
    set_: SetOption = None,
    run_dir: RunDirOption = None,
    progress: ProgressOption = True,
) -> None:
    """Build the default tiny GPT-2 and fine-tune it on the synthetic task's corpus."""
    _require_transformers()
    from pgrad import config as cfg
    from pgrad.rlhf import pipeline, sft

    settings = cfg.build(sft.SFTConfig, _layers(config, set_, steps=steps, seed=seed), "rlhf sft")
    path = pipeline.run_sft(settings, run_dir, progress)
    summary = json.loads((path / "summary.json").read_text())
    console.print(
        f"SFT: loss {summary['loss']:.3f} nats/token, well-formed answers "
        f"{summary['well_formed']:.0%}, task score {summary['task_score']:.3f} "
        f"({summary['wall_time_s']:.0f} s)"
    )
    console.print(f"model: {path / 'model'}")


@rlhf.command("reward")
def reward_command(
    policy: Annotated[
        Path,
        typer.Option(help="Model directory (or SFT run directory) whose samples are compared."),
    ],
    seed: SeedOption = None,
    config: ConfigOption = None,
    set_: SetOption = None,
    run_dir: RunDirOption = None,
    progress: ProgressOption = True,
) -> None:
    """Train a Bradley-Terry reward model on preference pairs judged by the hidden rule."""
    _require_transformers()
    from pgrad import config as cfg
    from pgrad.rlhf import pipeline
    from pgrad.rlhf import reward_model as rm

    settings = cfg.build(rm.RewardConfig, _layers(config, set_, seed=seed), "rlhf reward")
    path = pipeline.run_reward(pipeline.model_dir(policy), settings, run_dir, progress)
    summary = json.loads((path / "summary.json").read_text())
    console.print(
        f"reward model: accuracy against the hidden rule on {summary['test_pairs']} held-out "
        f"pairs [bold green]{summary['test_accuracy']:.1%}[/] "
        f"(train {summary['train_accuracy']:.1%})"
    )
    console.print(f"run directory: {path}  (use it as --reward {path})")


@rlhf.command("train")
def train_command(
    algo: Annotated[str, typer.Argument(help="reinforce, rloo, ppo or grpo.")] = "rloo",
    model: Annotated[
        Path | None,
        typer.Option(
            help="Local causal LM directory (save_pretrained) or SFT run; default: SFT first."
        ),
    ] = None,
    reward: Annotated[
        str, typer.Option(help="task, module:function, or a `pgrad rlhf reward` run directory.")
    ] = "task",
    prompts: Annotated[
        str, typer.Option(help="'bigger' (the default task) or a text file, one prompt per line.")
    ] = "bigger",
    beta: Annotated[float | None, typer.Option(help="KL penalty weight.")] = None,
    iterations: Annotated[int | None, typer.Option(help="Batches to train on.")] = None,
    lora_r: Annotated[
        int | None, typer.Option("--lora-r", help="LoRA rank (PEFT); 0: every weight trains.")
    ] = None,
    device: Annotated[
        str | None, typer.Option(help="auto (default: a GPU if there is one), cpu, cuda, cuda:N.")
    ] = None,
    seed: SeedOption = None,
    config: ConfigOption = None,
    set_: SetOption = None,
    run_dir: RunDirOption = None,
    progress: ProgressOption = True,
    resume: Annotated[
        Path | None,
        typer.Option(
            help="Continue this run from its last checkpoint (--iterations may extend it)."
        ),
    ] = None,
) -> None:
    """Policy-gradient fine-tuning with a per-token KL penalty to the reference model."""
    _require_transformers()
    from pgrad.rlhf import pipeline

    if resume is not None:
        given = [model, beta, seed, config, set_, run_dir, lora_r, device]
        if any(v for v in given) or reward != "task" or prompts != pipeline.TASK:
            raise PgradError("--resume continues a run as configured; it takes only --iterations")
        path = pipeline.resume_rl(resume, iterations, progress)
        saved = yaml.safe_load((path / "config.yaml").read_text())
        _report(json.loads((path / "summary.json").read_text()), saved["reward"], path)
        return
    layers = _layers(
        config, set_, beta=beta, iterations=iterations, seed=seed, lora_r=lora_r, device=device
    )
    settings = pipeline.build_config(algo, layers)
    source = pipeline.model_dir(model) if model is not None else None
    path = pipeline.run_rl(algo, settings, run_dir, source, reward, prompts, progress)
    _report(json.loads((path / "summary.json").read_text()), reward, path)


def _report(summary: dict, reward: str, path: Path) -> None:
    before, after, algo = summary["before"], summary["after"], summary["algo"]
    console.print(
        f"[bold]{algo}[/]: reward {before['reward']:.3f} -> [bold green]{after['reward']:.3f}[/], "
        f"KL to reference {after['kl']:.2f} nats, diversity {before['diversity']:.2f} -> "
        f"{after['diversity']:.2f} ({summary['wall_time_s']:.0f} s)"
    )
    if "task_score" in after and reward != "task":
        console.print(f"hidden task score {before['task_score']:.3f} -> {after['task_score']:.3f}")
    console.print(f"run directory: {path}")


@rlhf.command("sample")
def sample_command(
    source: Annotated[
        Path, typer.Argument(help="A run directory with model/, or a model directory.")
    ],
    prompt: Annotated[list[str] | None, typer.Option(help="Prompt text (repeatable).")] = None,
    n: Annotated[int, typer.Option(min=1, help="Samples per prompt.")] = 4,
    max_new_tokens: Annotated[int, typer.Option(min=1)] = 6,
    seed: Annotated[int, typer.Option(help="Random seed.", min=0)] = 0,
) -> None:
    """Print sampled responses (with the task's hidden score)."""
    _require_transformers()
    from pgrad.rlhf import pipeline

    prompts = prompt or ["7>", "42>", "815>"]
    for p, text, score in pipeline.sample(
        pipeline.model_dir(source), prompts, n, max_new_tokens, seed
    ):
        console.print(f"{p!r} -> {text!r}  score {score:.3f}", highlight=False)
