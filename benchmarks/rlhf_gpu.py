"""RLHF at real model sizes on one GPU: throughput, memory and a short GRPO run, with and
without LoRA.

    python benchmarks/rlhf_gpu.py --device cuda --out docs/rlhf/gpu        # one GPU: ~6 min
    python benchmarks/rlhf_gpu.py --device cpu --tiny --out /tmp/rlhf-gpu  # the suite runs this

Models are built from ``GPT2Config`` (nothing is downloaded), on the default task's
character-level tokenizer:

- ``124m``: GPT-2 small's shape, 12 layers x 768, 12 heads, with its 50,257-token vocabulary
  (tokens past the task's 14 are never in the data: SFT must drive them to ~0 probability, and
  decoding skips them), so the embedding and LM-head cost is GPT-2's: 124M parameters;
- ``0.5b``: 24 layers x 1280, 20 heads, the same vocabulary: ~0.54B parameters;
- ``tiny`` (``--tiny``): the default 2 x 64 model (0.1M), for CPU.

For each size: SFT from random weights on the task's corpus (``--sft-steps``, 1500, at
``SFT_LR``; or ``--sft-model DIR`` for the tiny size), then, with full fine-tuning and with LoRA
(rank 16; 8 for tiny), a GRPO run of ``--iterations`` batches of GRPO's default size
(8 prompts x 16 samples) from that SFT policy (bf16 autocast on a GPU). On one H200 the run
took 2.3 minutes with 300 SFT steps (docs/rlhf.md); 1500 add about 3.5. Measured per iteration
after the first (warm-up), medians:

- generation: response tokens sampled per second (``rl.generate``, KV cache);
- update: response tokens per second through the GRPO loss, backward and step;
- seconds per iteration (generate, score with policy and reference, update);
- peak GPU memory (``torch.cuda.max_memory_allocated``) over the run; on a CPU, peak RSS of
  the process so far;
- the hidden task score before and after the run (64 eval prompts x 4 samples): it must rise;
- SFT's seconds and its last logged loss (nats per token).

Writes ``results.json`` and ``results.md`` (a markdown table) to ``--out``, rewritten after
every row, so a run cut short keeps the rows it finished.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

SIZES = {
    "tiny": {"n_layer": 2, "n_embd": 64, "n_head": 4, "vocab": None},
    "124m": {"n_layer": 12, "n_embd": 768, "n_head": 12, "vocab": 50257},
    "0.5b": {"n_layer": 24, "n_embd": 1280, "n_head": 20, "vocab": 50257},
}
# Learning rates: pgrad's defaults for the tiny model (LoRA moves ~5x slower, docs/rlhf.md);
# the usual full fine-tuning and LoRA rates for GPT-2-sized models.
LEARNING_RATE = {("tiny", False): 1e-3, ("tiny", True): 3e-3}
LARGE_LR = {False: 2e-5, True: 5e-4}
SFT_LR = {"tiny": 1e-3, "124m": 3e-4, "0.5b": 2e-4}
"""SFT from random weights: the tiny model's default, and for the large shapes about the rates
GPT-3's paper used for models of these sizes. The first H200 run SFT'd them for 300 steps at
1e-4: scores of 0.000 before and after GRPO (not learned); this recipe is not yet measured."""


def build(size: str, tokenizer, seed: int):
    from transformers import GPT2Config, GPT2LMHeadModel

    shape = SIZES[size]
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=shape["vocab"] or len(tokenizer),
        n_positions=32,
        n_embd=shape["n_embd"],
        n_layer=shape["n_layer"],
        n_head=shape["n_head"],
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return GPT2LMHeadModel(config)


def sft_policy(size: str, args, where: torch.device):
    """(SFT model on ``where``, tokenizer, SFT seconds, SFT's last logged loss)."""
    from pgrad import device
    from pgrad.rlhf import model as lm
    from pgrad.rlhf import sft, task

    if args.sft_model is not None and size == "tiny":
        policy, tokenizer = lm.load(args.sft_model)
        return policy.to(where).eval(), tokenizer, 0.0, float("nan")
    tokenizer = lm.default_tokenizer()
    policy = build(size, tokenizer, args.seed).to(where)
    config = sft.SFTConfig(
        steps=args.sft_steps, learning_rate=SFT_LR[size], seed=args.seed, log_every=50
    )
    start = time.perf_counter()
    with device.bf16_autocast(where):
        loss = sft.train(policy, tokenizer, task.sft_corpus(config.corpus_size, args.seed), config)
    synchronize(where)
    return policy.eval(), tokenizer, time.perf_counter() - start, loss


def synchronize(where: torch.device) -> None:
    if where.type == "cuda":
        torch.cuda.synchronize(where)


def peak_memory_mb(where: torch.device) -> float:
    if where.type == "cuda":
        return torch.cuda.max_memory_allocated(where) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def grpo_run(size: str, lora: bool, sft_model, tokenizer, args, where: torch.device) -> dict:
    from pgrad.rlhf import pipeline, rl, task
    from pgrad.rlhf.sequences import generate

    rank = (8 if size == "tiny" else 16) if lora else 0
    lr = LEARNING_RATE.get((size, lora), LARGE_LR[lora])
    config = pipeline.build_config(
        "grpo",
        [{"device": str(where), "lora_r": rank, "learning_rate": lr, "seed": args.seed,
          "iterations": args.iterations}],
    )  # fmt: skip
    if where.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(where)
    torch.manual_seed(args.seed)
    trainer = rl.Trainer("grpo", copy.deepcopy(sft_model), tokenizer, pipeline.make_reward("task"),
                         config)  # fmt: skip
    n_params = sum(p.numel() for p in trainer.policy.parameters())
    trained = sum(p.numel() for p in trainer.params)
    eval_prompts = task.prompts(64, pipeline.EVAL_SEED)

    def evaluate() -> float:
        with trainer.precision():
            out = rl.evaluate(trainer.policy, trainer.reference, tokenizer,
                              pipeline.make_reward("task"), eval_prompts, 4,
                              config.max_new_tokens)  # fmt: skip
        return out["reward"]

    before = evaluate()
    rows = []
    for it in range(1, config.iterations + 1):
        prompts = task.prompts(config.prompts_per_batch, args.seed * 1_000_003 + it)
        repeated = [p for p in prompts for _ in range(config.samples_per_prompt)]
        synchronize(where)
        t0 = time.perf_counter()
        with trainer.precision():
            responses = generate(trainer.policy, tokenizer, repeated, config.max_new_tokens)
        synchronize(where)
        t1 = time.perf_counter()
        with trainer.precision():
            batch = trainer.score(responses)
        synchronize(where)
        t2 = time.perf_counter()
        stats = trainer.update(batch)
        synchronize(where)
        t3 = time.perf_counter()
        tokens = int(responses.mask.sum())
        rows.append({"generate_s": t1 - t0, "score_s": t2 - t1, "update_s": t3 - t2,
                     "tokens": tokens, "reward": stats["reward"]})  # fmt: skip
    after = evaluate()
    timed = rows[1:] or rows  # the first iteration warms up kernels and allocators
    median = statistics.median
    return {
        "size": size,
        "lora_r": rank,
        "learning_rate": lr,
        "parameters": n_params,
        "trained_parameters": trained,
        "generate_tokens_per_s": median(r["tokens"] / r["generate_s"] for r in timed),
        "update_tokens_per_s": median(r["tokens"] / r["update_s"] for r in timed),
        "seconds_per_iteration": median(
            r["generate_s"] + r["score_s"] + r["update_s"] for r in timed
        ),
        "peak_memory_mb": peak_memory_mb(where),
        "score_before": before,
        "score_after": after,
        "reward_rises": after > before,
        "iterations": config.iterations,
        "prompts_per_batch": config.prompts_per_batch,
        "samples_per_prompt": config.samples_per_prompt,
        "max_new_tokens": config.max_new_tokens,
    }


def table(results: list[dict], where: str) -> str:
    first = results[0]
    lines = [
        f"Device: {where}. GRPO, {first['prompts_per_batch']} prompts x "
        f"{first['samples_per_prompt']} samples, {first['max_new_tokens']} new tokens, "
        f"{first['iterations']} iterations, bf16 autocast on a GPU.",
        "",
        "| size | params | LoRA r (trained) | gen tok/s | update tok/s | s/iter | peak MB "
        "| score before -> after |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['size']} | {r['parameters'] / 1e6:.1f}M | {r['lora_r']} "
            f"({r['trained_parameters'] / 1e6:.2f}M) | {r['generate_tokens_per_s']:,.0f} "
            f"| {r['update_tokens_per_s']:,.0f} | {r['seconds_per_iteration']:.3f} "
            f"| {r['peak_memory_mb']:,.0f} | {r['score_before']:.3f} -> {r['score_after']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu")
    parser.add_argument("--tiny", action="store_true", help="Only the tiny model (for a CPU).")
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES), help="Overrides --tiny.")
    parser.add_argument("--iterations", type=int, help="GRPO batches (default 30 tiny, 40).")
    parser.add_argument("--sft-steps", type=int, default=1500)
    parser.add_argument("--sft-model", type=Path, help="An SFT model directory for the tiny size.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("docs/rlhf/gpu"))
    args = parser.parse_args()

    from pgrad import device

    where = device.resolve(args.device)
    sizes = args.sizes or (["tiny"] if args.tiny else ["124m", "0.5b"])
    args.iterations = args.iterations or (30 if sizes == ["tiny"] else 40)
    if where.type == "cpu":
        torch.set_num_threads(1)
    name = torch.cuda.get_device_name(where) if where.type == "cuda" else platform.processor()
    where_name = f"{where} ({name or 'CPU'}), torch {torch.__version__}"
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    for size in sizes:
        policy, tokenizer, sft_s, sft_loss = sft_policy(size, args, where)
        for lora in (False, True):
            row = grpo_run(size, lora, policy, tokenizer, args, where)
            row["sft_seconds"], row["sft_loss"] = sft_s, sft_loss
            results.append(row)
            print(json.dumps(row), flush=True)
            write(args.out, where_name, results)
        del policy
    print(table(results, where_name))


def write(out: Path, where_name: str, results: list[dict]) -> None:
    payload = {"device": where_name, "command": " ".join(sys.argv), "results": results}
    (out / "results.json").write_text(json.dumps(payload, indent=2) + "\n")
    (out / "results.md").write_text(table(results, where_name))


if __name__ == "__main__":
    main()
