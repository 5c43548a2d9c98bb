"""RLHF on the default task: REINFORCE, RLOO and PPO from the same SFT policy, with and without
the KL penalty, over seeds; and the learned-reward-model chain. ``--algos`` takes any of
``reinforce rloo ppo grpo grpo:dr_grpo`` (GRPO with ``loss_type: dr_grpo``), each optionally
with ``@K``: K samples per prompt and 128 / K prompts per batch (``grpo@16``: the same 128
responses per batch as the default 32 x 4, in groups of 16).

    pip install -e '.[rlhf]'
    python benchmarks/rlhf.py --seeds 0 1 2 --workers 2 --out docs/rlhf

For each seed: one SFT run (shipped defaults), then every (algorithm, beta) from that policy for
``--iterations`` batches; then (seed 0) a reward model from preference pairs and RLOO against
it. Writes ``results.json`` and ``curves.png`` to ``--out`` and prints a markdown table. One
torch thread per process; ``--workers`` processes at a time.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path


def _sft(seed: int, root: str) -> str:
    import torch

    torch.set_num_threads(1)
    from pgrad.rlhf import pipeline, sft

    return str(pipeline.run_sft(sft.SFTConfig(seed=seed), Path(root) / f"sft-s{seed}"))


def _rl(
    algo: str,
    beta: float,
    seed: int,
    iterations: int,
    root: str,
    sft_dir: str,
    reward: str = "task",
) -> dict:
    import torch

    torch.set_num_threads(1)
    from pgrad.rlhf import pipeline

    spec, _, k = algo.partition("@")  # "grpo@16": groups of 16, 128 responses per batch
    name, _, loss_type = spec.partition(":")  # "grpo:dr_grpo": GRPO with that loss_type
    keys = {"beta": beta, "iterations": iterations, "seed": seed}
    if loss_type:
        keys["loss_type"] = loss_type
    if k:
        keys |= {"samples_per_prompt": int(k), "prompts_per_batch": 128 // int(k)}
    config = pipeline.build_config(name, [keys])
    run = algo.replace(":", "-").replace("@", "-k")
    run += f"-beta{beta}-s{seed}" + ("-rm" if reward != "task" else "")
    path = pipeline.run_rl(name, config, Path(root) / run,
                           Path(sft_dir) / "model", reward)  # fmt: skip
    summary = json.loads((path / "summary.json").read_text())
    with open(path / "metrics.csv") as f:
        curve = [
            {k: float(v) if v else float("nan") for k, v in row.items()}
            for row in csv.DictReader(f)
        ]
    return {
        "algo": algo,
        "beta": beta,
        "seed": seed,
        "reward": reward,
        "summary": summary,
        "curve": [
            {k: r[k] for k in ("step", "reward", "kl", "distinct", "entropy")} for r in curve
        ],
    }


def _reward_model(seed: int, root: str, sft_dir: str) -> str:
    import torch

    torch.set_num_threads(1)
    from pgrad.rlhf import pipeline
    from pgrad.rlhf import reward_model as rm

    return str(
        pipeline.run_reward(
            Path(sft_dir) / "model", rm.RewardConfig(seed=seed), Path(root) / f"rm-s{seed}"
        )
    )


def _optimum(seed: int, beta: float, sft_dir: str, n_prompts: int) -> dict:
    import torch

    torch.set_num_threads(1)
    from pgrad.rlhf import model, optimum, task
    from pgrad.rlhf.pipeline import EVAL_SEED

    policy, tokenizer = model.load(Path(sft_dir) / "model")
    prompts = task.prompts(n_prompts, EVAL_SEED)  # the evaluation prompts of every run
    return {
        "seed": seed,
        "beta": beta,
        **optimum.kl_regularised_optimum(policy.eval(), tokenizer, prompts, beta),
    }


def mean_std(values: list[float], digits: int = 3) -> str:
    """``mean ± std`` of ``values`` (the value alone if there is one), to ``digits`` places."""
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--algos", nargs="+", default=["reinforce", "rloo", "ppo"])
    parser.add_argument("--betas", type=float, nargs="+", default=[0.05, 0.0])
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--root", default="/tmp/pgrad-rlhf-bench")
    parser.add_argument("--out", default="docs/rlhf")
    parser.add_argument("--no-reward-model", action="store_true")
    parser.add_argument(
        "--optimum",
        action="store_true",
        help="also the closed-form KL-regularised optimum (slow: ~1 min/seed)",
    )
    args = parser.parse_args()
    os.makedirs(args.root, exist_ok=True)
    root = os.path.join(args.root, time.strftime("%Y%m%d-%H%M%S"))
    start = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        sft = dict(
            zip(args.seeds, pool.map(_sft, args.seeds, [root] * len(args.seeds)), strict=True)
        )
        jobs = [(a, b, s) for s in args.seeds for a in args.algos for b in args.betas]
        futures = [pool.submit(_rl, a, b, s, args.iterations, root, sft[s]) for a, b, s in jobs]
        chain = None
        if not args.no_reward_model:
            s0 = args.seeds[0]
            rm_dir = pool.submit(_reward_model, s0, root, sft[s0]).result()
            chain = pool.submit(
                _rl, "rloo", args.betas[0], s0, args.iterations, root, sft[s0], rm_dir
            )
        optima = [pool.submit(_optimum, s, b, sft[s], 64) for s in args.seeds for b in args.betas
                  if b > 0 and args.optimum]  # fmt: skip
        results = [f.result() for f in futures]
        optima = [f.result() for f in optima]
        if chain is not None:
            chain = {
                **chain.result(),
                "reward_model": json.loads((Path(rm_dir) / "summary.json").read_text()),
            }
    wall = time.perf_counter() - start
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    info = {
        "command": "python benchmarks/rlhf.py "
        + " ".join(
            f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
            for k, v in vars(args).items()
            if k not in ("root", "no_reward_model")
        ),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "wall_time_s": round(wall, 1),
    }
    (out / "results.json").write_text(
        json.dumps(
            {**info, "runs": results, "optima": optima, "reward_model_chain": chain}, indent=1
        )
        + "\n"
    )
    columns = ["algorithm", "beta", "reward before", "reward after", "KL after (nats)",
               "objective after", "optimum J*", "diversity before", "diversity after",
               "train time (s)"]  # fmt: skip
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for a in args.algos:
        for b in args.betas:
            rows = [r["summary"] for r in results if r["algo"] == a and r["beta"] == b]
            cells = [mean_std([r[when][key] for r in rows]) for when, key in
                     [("before", "reward"), ("after", "reward"), ("after", "kl")]]  # fmt: skip
            cells.append(mean_std([r["after"]["reward"] - b * r["after"]["kl"] for r in rows]))
            best = [o["objective"] for o in optima if o["beta"] == b]
            cells.append(mean_std(best) if best else "")
            cells += [mean_std([r[w]["diversity"] for r in rows]) for w in ("before", "after")]
            seconds = statistics.median(r["wall_time_s"] for r in rows)
            lines.append(f"| {a} | {b} | " + " | ".join(cells) + f" | {seconds:.0f} |")
    print("\n".join(lines))
    if chain is not None:
        s, m = chain["summary"], chain["reward_model"]
        print(
            f"\nreward model: held-out accuracy {m['test_accuracy']:.3f} on {m['test_pairs']} "
            f"pairs (train {m['train_accuracy']:.3f}); RLOO against it: hidden score "
            f"{s['before']['task_score']:.3f} -> {s['after']['task_score']:.3f}, "
            f"KL {s['after']['kl']:.2f}"
        )
    _plot(results, out / "curves.png")
    print(f"\n{info['command']}\n{info['machine']}; wall {wall:.0f} s")


def _plot(results: list[dict], path: Path) -> None:
    from pgrad.plot import pyplot, save

    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    algos = list(dict.fromkeys(r["algo"] for r in results))
    colors = dict(
        zip(algos, ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple"], strict=False)
    )
    for (key, label), ax in zip(
        [
            ("reward", "mean score of the batch's responses"),
            ("kl", "KL(pi || pi_ref) per response (nats)"),
            ("distinct", "distinct responses / responses in batch"),
        ],
        axes,
        strict=True,
    ):
        for r in results:
            style = "-" if r["beta"] > 0 else "--"
            ax.plot(
                [c["step"] for c in r["curve"]],
                [c[key] for c in r["curve"]],
                style,
                color=colors[r["algo"]],
                alpha=0.6,
                linewidth=1,
                label=f"{r['algo']}, beta={r['beta']}" if r["seed"] == results[0]["seed"] else None,
            )
        ax.set_xlabel("iteration (batch of 32 prompts x 4 responses)")
        ax.set_ylabel(label)
    save(fig, path, legend_fontsize=8)


if __name__ == "__main__":
    main()
