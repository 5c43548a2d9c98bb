"""The ``pgrad rlhf`` commands: SFT, reward model, RL fine-tuning and sampling, each writing a
run directory like the other algorithms (config.yaml, metrics.csv + TensorBoard,
checkpoints/, summary.json) plus the model in ``save_pretrained`` form.
"""

from __future__ import annotations

import importlib
import os
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from pgrad import config as cfg
from pgrad import device, runs
from pgrad.errors import PgradError, module_name
from pgrad.logging import MetricsLogger
from pgrad.loop import Loop, StopSignals
from pgrad.rlhf import model as lm
from pgrad.rlhf import reward_model as rm
from pgrad.rlhf import rl, sft, task
from pgrad.rlhf.sequences import Responses, generate
from pgrad.rlhf.sft import teacher_forced
from pgrad.rlhf.watchdog import RLHFWatchdog

TASK = "bigger"
EVAL_SEED = 10_000  # eval prompts: never the training prompts' seeds
Reward = Callable[[Responses], list[float]]


def save_model(model, tokenizer, path: Path) -> None:
    """``save_pretrained`` of ``model`` and ``tokenizer`` into ``path``, atomically."""
    _atomic_dir(path, lambda tmp: lm.save(model, tokenizer, tmp))


def _atomic_dir(path: Path, write: Callable[[Path], None]) -> None:
    """``write`` a directory's files into a temporary directory, then rename it over ``path``:
    a crash leaves the old directory (for an instant renamed ``.NAME.old``) or the new one,
    never a half-written one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    write(tmp)
    old = path.with_name(f".{path.name}.old")
    if path.exists():
        path.rename(old)
    tmp.rename(path)
    shutil.rmtree(old, ignore_errors=True)


def _function(spec: str) -> Callable[[str, str], float]:
    module, _, name = spec.partition(":")
    try:
        fn = getattr(importlib.import_module(module_name(module, f"reward {spec!r}")), name)
    except (ImportError, AttributeError) as e:
        raise PgradError(f"reward {spec!r}: cannot import {name!r} from {module!r} ({e})") from None
    if not callable(fn):
        raise PgradError(f"reward {spec!r} is not callable")
    return fn


def make_reward(spec: str) -> Reward:
    """``task`` (the default task's hidden score), ``module:function`` (called as
    ``function(prompt, response) -> float``), or the run directory of ``pgrad rlhf reward``."""
    if spec == "task":
        spec = "pgrad.rlhf.task:score"
    path = Path(spec)
    if (path / "reward_model").is_dir():
        model, tokenizer = rm.RewardModel.load(path / "reward_model")

        @torch.no_grad()
        def learned(responses: Responses) -> list[float]:
            batch = teacher_forced(tokenizer, responses.prompts, responses.texts)
            return model(batch).tolist()

        return learned
    if ":" not in spec:
        raise PgradError(
            f"reward {spec!r}: expected 'task', module:function, or a `pgrad rlhf reward` run "
            "directory (with reward_model/)"
        )
    fn = _function(spec)
    return lambda r: [float(fn(p, t)) for p, t in zip(r.prompts, r.texts, strict=True)]


Prompts = Callable[[int, int], list[str]]


def prompt_source(spec: str) -> Prompts:
    """``draw(n, seed)``: n prompts from the default task, or drawn (with replacement) from a
    text file of one prompt per line, read once here."""
    if spec == TASK:
        return task.prompts
    try:
        lines = [line.rstrip("\n") for line in Path(spec).read_text().splitlines() if line.strip()]
    except OSError as e:
        raise PgradError(f"cannot read prompts file {spec!r}: {e.strerror}") from None
    if not lines:
        raise PgradError(f"prompts file {spec!r} has no prompts")

    def draw(n: int, seed: int) -> list[str]:
        rng = torch.Generator().manual_seed(seed)
        return [lines[i] for i in torch.randint(len(lines), (n,), generator=rng).tolist()]

    return draw


def model_dir(path: Path) -> Path:
    """A model directory, given it or a run directory holding model/."""
    path = Path(path)
    if not (path / "config.json").is_file() and (path / "model" / "config.json").is_file():
        return path / "model"
    return path


def _policy(model_path: Path) -> tuple[Any, Any]:
    policy, tokenizer = lm.load(model_path)
    return policy.eval(), tokenizer


# --- sft ------------------------------------------------------------------------------------


def run_sft(config: sft.SFTConfig, run_dir: Path | None, progress: bool = False) -> Path:
    """Build the default GPT-2 and fit it to the task's corpus; the model lands in model/."""
    path = runs.create(run_dir, "rlhf-sft", TASK, config.seed)
    runs.write_yaml(
        path / "config.yaml", {"command": "rlhf sft", "task": TASK, **cfg.to_dict(config)}
    )
    tokenizer = lm.default_tokenizer()
    model = lm.default_model(tokenizer, config.seed, config.n_layer, config.n_embd, config.n_head)
    logger = MetricsLogger(path, config.steps, progress, headline="loss")
    start = time.perf_counter()
    try:
        loss = sft.train(
            model,
            tokenizer,
            task.sft_corpus(config.corpus_size, config.seed),
            config,
            log=logger.write,
        )
    finally:
        logger.close()
    save_model(model, tokenizer, path / "model")
    runs.save_checkpoint(path, config.steps, {"policy": model.state_dict()}, keep=1)
    torch.manual_seed(config.seed)
    prompts = task.prompts(256, EVAL_SEED)
    responses = generate(model, tokenizer, prompts, task.MAX_DIGITS + 2)
    well_formed = [task.parse(t) is not None for t in responses.texts]
    runs.write_json(
        path / "summary.json",
        {
            "loss": loss,
            "wall_time_s": round(time.perf_counter() - start, 1),
            "well_formed": sum(well_formed) / len(well_formed),
            "task_score": sum(
                task.score(p, t) for p, t in zip(prompts, responses.texts, strict=True)
            )
            / len(prompts),
        },
    )
    return path


# --- reward model ---------------------------------------------------------------------------


def run_reward(
    policy_dir: Path, config: rm.RewardConfig, run_dir: Path | None, progress: bool = False
) -> Path:
    """Preference pairs from the policy's samples judged by the hidden rule, a Bradley-Terry
    reward model fitted to them, and its accuracy on held-out pairs."""
    policy, tokenizer = _policy(policy_dir)
    path = runs.create(run_dir, "rlhf-reward", TASK, config.seed)
    runs.write_yaml(
        path / "config.yaml",
        {"command": "rlhf reward", "policy": str(policy_dir), **cfg.to_dict(config)},
    )
    torch.manual_seed(config.seed)
    start = time.perf_counter()
    train_pairs = rm.preference_pairs(
        policy,
        tokenizer,
        task.prompts(config.pairs, config.seed),
        task.score,
        config.max_new_tokens,
    )
    test_pairs = rm.preference_pairs(
        policy,
        tokenizer,
        task.prompts(config.test_pairs, EVAL_SEED),
        task.score,
        config.max_new_tokens,
    )
    for name, drawn, kept in (("pairs", config.pairs, train_pairs),
                              ("test_pairs", config.test_pairs, test_pairs)):  # fmt: skip
        if not kept:
            raise PgradError(
                f"all {drawn} of {name} were ties (the policy's two responses scored the same), "
                f"so there is nothing to learn or test a preference on; expected a larger {name} "
                "or a policy whose responses differ more"
            )
    logger = MetricsLogger(path, config.steps, progress, headline="loss")
    try:
        model = rm.train(policy, tokenizer, train_pairs, config, log=logger.write)
    finally:
        logger.close()
    _atomic_dir(path / "reward_model", lambda tmp: model.save(tmp, tokenizer))
    runs.save_checkpoint(path, config.steps, {"reward_model": model.state_dict()}, keep=1)
    summary = {
        "train_pairs": len(train_pairs),
        "test_pairs": len(test_pairs),
        "train_accuracy": rm.accuracy(model, tokenizer, train_pairs[:2000]),
        "test_accuracy": rm.accuracy(model, tokenizer, test_pairs),
        "wall_time_s": round(time.perf_counter() - start, 1),
    }
    runs.write_json(path / "summary.json", summary)
    return path


# --- RL -------------------------------------------------------------------------------------


def build_config(algo: str, layers: list[dict[str, Any]]) -> rl.RLHFConfig:
    if algo not in rl.ALGOS:
        raise PgradError(f"unknown RLHF algorithm {algo!r}; expected one of {', '.join(rl.ALGOS)}")
    layers = [rl.without_kl_estimator(layer) for layer in layers]
    config = cfg.build(rl.RLHFConfig, [rl.ALGO_DEFAULTS[algo], *layers], f"rlhf {algo}")
    if algo in ("rloo", "grpo") and config.samples_per_prompt < 2:
        raise cfg.ConfigError(f"{algo} needs samples_per_prompt >= 2 (a baseline from the group)")
    if algo in ("ppo", "grpo") and config.aggregation != "token":
        raise cfg.ConfigError(
            f"aggregation {config.aggregation!r} is for reinforce and rloo; {algo} aggregates "
            "its clipped surrogate itself (grpo: loss_type)"
        )
    return config


@dataclass(frozen=True)
class Sources:
    """Where rewards and prompts come from: each spec as given, and what it was made into
    (made once: a reward model is loaded, a prompts file read, before any run starts)."""

    reward: str
    reward_fn: Reward
    prompts: str
    draw: Prompts

    @classmethod
    def of(cls, reward: str, prompts: str) -> Sources:
        return cls(reward, make_reward(reward), prompts, prompt_source(prompts))


def run_rl(
    algo: str,
    config: rl.RLHFConfig,
    run_dir: Path | None,
    model: Path | None = None,
    reward: str = "task",
    prompts: str = TASK,
    progress: bool = False,
) -> Path:
    """Fine-tune ``model`` (default: a fresh SFT run in RUN_DIR/sft) with ``algo`` against
    ``reward``; writes metrics, checkpoints, model/ and summary.json (eval before and after)."""
    # Bad input fails before anything is written.
    sources = Sources.of(reward, prompts)
    if model is not None:
        lm.check_dir(model)
    device.resolve(config.device, auto="accelerator")
    path = runs.create(run_dir, f"rlhf-{algo}", TASK, config.seed)
    if model is None:
        model = run_sft(sft.SFTConfig(seed=config.seed), path / "sft") / "model"
    return _train(algo, config, path, Path(model), sources, progress)


def resume_rl(run_dir: Path, iterations: int | None = None, progress: bool = False) -> Path:
    """Continue a ``pgrad rlhf train`` run from its last checkpoint (to ``iterations``, if
    given): the same metrics as a run that was never interrupted (tested)."""
    path = Path(run_dir)
    saved = None
    if (path / "config.yaml").is_file():
        saved = yaml.safe_load((path / "config.yaml").read_text())
    if not isinstance(saved, dict) or saved.get("command") != "rlhf train":
        raise PgradError(f"{str(path)!r} is not a `pgrad rlhf train` run directory")
    kept = runs.checkpoints(path)
    if not kept:
        raise PgradError(f"run {str(path)!r} has no checkpoint to resume from")
    state = runs.load_checkpoint(kept[-1])
    fixed = ("command", "algo", "model", "reward", "prompts")
    keys = {k: v for k, v in saved.items() if k not in fixed}
    if iterations is not None:
        keys["iterations"] = iterations
    config = build_config(saved["algo"], [keys])
    if config.iterations <= state["step"]:
        raise PgradError(
            f"run {str(path)!r} is at iteration {state['step']}; pass --iterations above that"
        )
    sources = Sources.of(saved["reward"], saved["prompts"])
    return _train(saved["algo"], config, path, Path(saved["model"]), sources, progress, state)


def _train(
    algo: str,
    config: rl.RLHFConfig,
    path: Path,
    model: Path,
    sources: Sources,
    progress: bool,
    state: dict[str, Any] | None = None,
) -> Path:
    reward, reward_fn, prompts = sources.reward, sources.reward_fn, sources.prompts
    policy, tokenizer = _policy(model)
    runs.write_yaml(
        path / "config.yaml",
        {
            "command": "rlhf train",
            "algo": algo,
            "model": str(model),
            "reward": reward,
            "prompts": prompts,
            **cfg.to_dict(config),
        },
    )
    torch.manual_seed(config.seed)
    trainer = rl.Trainer(algo, policy, tokenizer, reward_fn, config)
    task_score = task.score if prompts == TASK else None
    eval_prompts = sources.draw(config.eval_prompts, EVAL_SEED)

    def evaluate() -> dict[str, float]:
        # From a fork of torch's generator: training samples the same with or without evaluations.
        with device.forked_rng(device.of(trainer.policy)), trainer.precision():
            return rl.evaluate(
                trainer.policy,
                trainer.reference,
                tokenizer,
                reward_fn,
                eval_prompts,
                config.eval_samples,
                config.max_new_tokens,
                task_score,
            )

    start = time.perf_counter()
    first = 0 if state is None else state["step"]
    # A resumed run's watchdog starts afresh from the rows it logs.
    loop = Loop(config, RLHFWatchdog(), step=first)
    if state is None:
        before = evaluate()
    else:  # everything the loop carries between iterations
        trainer.load_state_dict(state)
        before, loop.pending = state["before"], state["pending_rows"]
        rng = state["rng"] if "rng" in state else {"torch": state["torch_rng"]}  # older runs
        device.set_rng_state(rng, device.of(trainer.policy))
    # Every row has the eval columns (NaN between evaluations): one CSV header.
    eval_columns = {f"eval_{k}": float("nan") for k in before} if config.eval_every else {}
    keep = None if state is None else state["step"]
    logger = MetricsLogger(path, config.iterations, progress, keep_rows_to=keep, headline="reward")

    def checkpoint() -> None:
        rng = device.rng_state(device.of(trainer.policy))
        extra = {"before": before, "pending_rows": loop.pending, "rng": rng}
        runs.save_checkpoint(path, loop.step, {**trainer.state_dict(), **extra},
                             config.keep_checkpoints)  # fmt: skip

    stop = StopSignals()
    try:
        while loop.step < config.iterations and stop.signal is None:
            it = loop.step + 1
            batch = trainer.collect(
                sources.draw(config.prompts_per_batch, config.seed * 1_000_003 + it)
            )
            try:
                stats = trainer.update(batch)
            except PgradError as e:
                kept = runs.checkpoints(path)
                where = f"last good checkpoint {kept[-1]}" if kept else "no checkpoint yet"
                raise PgradError(f"iteration {it}: {e}; {where}") from None
            if task_score is not None and reward != "task":
                r = batch.responses
                stats["task_score"] = sum(
                    task_score(p, t) for p, t in zip(r.prompts, r.texts, strict=True)
                ) / len(r.texts)
            loop.advance(1, stats)
            evaluated = loop.evaluation_due(config)
            if evaluated:
                stats.update({f"eval_{k}": v for k, v in evaluate().items()})
            if loop.log_due(config, config.iterations, evaluated):
                loop.log(logger, {**eval_columns, **loop.take()})
            if loop.checkpoint_due(config) or loop.step == config.iterations:
                checkpoint()
        if stop.signal is not None:  # stopped between checkpoints: keep what was done
            checkpoint()
    finally:
        stop.restore()
        logger.close()
    after = evaluate()
    save_model(rl.merged(trainer.policy), tokenizer, path / "model")
    summary = {
        "algo": algo,
        "iterations": config.iterations,
        "before": before,
        "after": after,
        "wall_time_s": round(time.perf_counter() - start, 1),
        "warnings": loop.warnings,
    }
    if stop.signal is not None:
        summary["interrupted"] = signal.Signals(stop.signal).name
    runs.write_json(path / "summary.json", summary)
    return path


def sample(
    source: Path, prompts: list[str], n: int, max_new_tokens: int, seed: int
) -> list[tuple[str, str, float]]:
    """(prompt, response, task score) for ``n`` samples per prompt from a model directory or a
    run directory holding model/."""
    policy, tokenizer = _policy(model_dir(source))
    torch.manual_seed(seed)
    repeated = [p for p in prompts for _ in range(n)]
    texts = generate(policy, tokenizer, repeated, max_new_tokens).texts
    return [(p, t, task.score(p, t)) for p, t in zip(repeated, texts, strict=True)]
