"""pgrad vs TRL 1.16 on the default RLHF task: RLOO and GRPO from the same SFT policy, the same
prompts, the same settings, scored by the same evaluation code (issue 18).

    pip install -e '.[rlhf,bench]' -c constraints.txt      # trl==1.16.0 (datasets, pandas, ...)
    python benchmarks/rlhf_trl.py --seeds 0 1 2 --out docs/rlhf
    python benchmarks/rlhf_trl.py --smoke                  # 1 seed, 3 iterations, both libraries

For each seed: one SFT policy (pgrad's pipeline, shipped settings; reused from ``--root`` if it is
already there). For each library x algorithm: training in a fresh subprocess (one torch thread,
CPU, float32), one run at a time; the child reports the wall time of training only and its peak
RSS (``VmHWM``; also the RSS when training starts, after imports and model loading) and saves
the final weights. The parent then loads every final model into pgrad's
own ``rl.evaluate`` (the same held-out prompts, the same number of samples, the same torch seed
for both libraries): the hidden task score (no missing-EOS penalty, as pgrad's eval reports it)
and KL(pi || pi_ref) per response, the k1 sum log pi - log pi_ref over the response's tokens
averaged over the samples (an unbiased estimate of the sequence KL; the reference is the SFT
model). Writes ``trl-results.json`` to ``--out`` and prints a markdown table (mean ± std over
seeds).

Settings, pgrad (``RLHFConfig``) -> TRL (``RLOOConfig`` / ``GRPOConfig``)
---------------------------------------------------------------------------
Shared by both algorithms:

- model: the seed's SFT GPT-2 (``save_pretrained`` dir), passed as the loaded model; TRL builds
  its reference from the same directory. Tokenizer: pgrad's character tokenizer. pgrad prepends
  BOS to every prompt (``sequences.encode_prompts``); TRL tokenises prompts with
  ``tokenizer(text)``, so the TRL child gives the tokenizer a post-processor that adds BOS: both
  see ``<bos>537>``.
- prompts_per_batch 32, samples_per_prompt k = 4 -> ``per_device_train_batch_size = 128``,
  ``num_generations = 4``, ``gradient_accumulation_steps = 1``, ``steps_per_generation = 1``
  (so ``generation_batch_size = 128``: 32 prompts x 4 per step), one optimizer step per batch.
- prompts: pgrad draws batch ``it`` (1-based) as ``task.prompts(32, seed * 1_000_003 + it)``;
  TRL's ``datasets.Dataset`` is those batches concatenated in order, with
  ``shuffle_dataset=False``: step ``it`` of both libraries sees the same 32 prompts.
- iterations -> ``max_steps`` (the dataset holds exactly one epoch of them).
- max_new_tokens 6 -> ``max_completion_length = 6``; sampling temperature 1, no top-k/top-p:
  ``temperature=1.0, top_k=0, top_p=1.0, min_p=None, repetition_penalty=1.0``.
- learning_rate 1e-3, Adam(eps=1e-5), max_grad_norm 1.0 -> ``learning_rate=1e-3,
  lr_scheduler_type="constant"`` (TRL's default is a linear decay to 0), ``warmup_steps=0``,
  ``optim`` AdamW with ``weight_decay=0.0`` (= Adam), ``adam_epsilon=1e-5``,
  ``max_grad_norm=1.0``.
- dropout off: pgrad runs the policy in ``eval()``; TRL ``disable_dropout=True``.
- reward: pgrad's hidden ``task.score(prompt, response)`` minus ``missing_eos_penalty`` (1.0)
  for a response with no EOS within 6 tokens. TRL's reward function rebuilds pgrad's response
  text from ``completion_ids`` (decoded with special tokens kept, up to the first EOS, as
  ``sequences.generate`` does; TRL's own ``completions`` drop special tokens) and applies the
  same penalty.
- CPU, float32: ``use_cpu=True, bf16=False, fp16=False``, ``use_vllm=False``,
  ``gradient_checkpointing=False`` (TRL's default is True), ``report_to="none"``,
  ``save_strategy="no"``; one torch thread in both children.

RLOO (pgrad ``rloo``: beta = 0.05 in the reward) -> ``RLOOTrainer`` with ``beta=0.05,
normalize_advantages=False, num_iterations=1``. Both put the k1 KL in the reward,
R_i = score_i - beta sum_t (log pi_old - log pi_ref), and use the leave-one-out baseline of the
k - 1 other samples. Not identical (no TRL option removes these):

- pgrad weights token t by its reward-to-go, G_t - b_i (the KL of tokens before t dropped: they
  do not depend on a_t); TRL weights every token by the whole R_i - b_i. Same expected gradient,
  different variance.
- pgrad's loss is a mean over the batch's response tokens, TRL's a mean over responses of the
  sequence's summed log-prob (times a sequence-level ratio that is 1 with one step per batch).
  TRL's gradient is (tokens / responses in the batch: 3.5 at the SFT policy, 5 after RL) times
  pgrad's. Adam undoes a constant scale, but ``max_grad_norm=1.0`` clips TRL's gradient more
  often than pgrad's (first batch of seed 0: norm 1.67, clipped, against pgrad's 0.48).
  ``--rloo-aggregation response`` gives pgrad's RLOO TRL's sum per response (``aggregation:
  response``), so only the reward-to-go weighting differs.

GRPO -> ``GRPOTrainer`` with ``loss_type="grpo"`` (per-response token mean, then the mean over
responses: pgrad's ``loss_type: grpo``), ``scale_rewards="group"`` (divide by the group's sample
std + 1e-4, as ``advantages.group_baseline``), ``epsilon=0.2`` (clip_range),
``num_iterations=1`` (pgrad's GRPO default: one epoch, one minibatch of all 128 responses, so
the ratio is 1), ``importance_sampling_level="token"``, ``mask_truncated_completions=False``,
``top_entropy_quantile=1.0``, ``entropy_coef=0``. The KL cannot go to the same place as pgrad's
default: TRL's GRPO has no KL in the reward, only its k3 loss term with coefficient ``beta``.
So pgrad runs GRPO with its TRL-compatible KL: ``beta 0`` (no reward penalty) and
``kl_loss_coef 0.05`` (k3 of log pi_theta - log pi_ref, aggregated like the surrogate), against
TRL's ``beta=0.05`` with ``use_bias_correction_kl=False`` (TRL 1.16's default multiplies k3 by
the differentiable ratio, which changes its gradient; pgrad's ``kl_loss`` does not). With these,
both compute the same loss on the same kind of batch. This is not pgrad's default GRPO (KL in
the reward, ``beta 0.05``): with the KL only in the loss, and the score divided by the group's
std while the KL term is not, the regulariser is far weaker, so both end at a higher KL than
RLOO.

Differences that remain in every run: the random numbers (sampling draws differ, so runs match
in distribution, not sample for sample), TRL's per-step bookkeeping (metrics, logging every 10
steps: part of its training time here), pgrad's training time is its ``rl.Trainer`` loop
(collect + update, as ``pipeline._train`` runs it, without the run directory's metrics,
evaluations and checkpoints). TRL's training forward passes give GPT-2 ``position_ids = 0..L-1``
over the left-padded row (only ``generate`` counts real tokens), so a prompt shorter than the
longest in its batch is scored at shifted positions, unlike the positions it was sampled at (and
unlike SFT). The TRL child fixes this with a forward pre-hook on the policy's and reference's
GPT-2 body that fills in ``position_ids = cumsum(attention_mask) - 1`` (what pgrad's
``sequences.run`` passes) when none are given; ``--trl-raw-positions`` turns the hook off.

Checked once by hand (not run here), on one TRL batch of seed 0 at the SFT weights: TRL's
reference log-probs equal pgrad's ``sequences.forward`` to 5e-7 with the hook (up to 0.74 nats
per token apart without it); the gradient of TRL's GRPO loss equals that of pgrad's
``rl.Trainer.loss`` on the same responses to 6e-8 (max abs); TRL's RLOO gradient has cosine
1.00000 with pgrad's and 3.47 times its norm (the batch's mean response length; the KL is 0 at
the SFT weights, so reward-to-go and the whole return coincide there). Without the hook, TRL's
RLOO on seed 0 ends at score 0.677 and KL 5.08 (0.942 and 3.39 with it); its GRPO barely moves
(0.947, 9.66 against 0.944, 9.51).

Columns: "score - 0.05 KL" is the objective pgrad's RLOO (and TRL's) maximises, E[score] - beta
KL with beta 0.05; GRPO with the KL in the loss maximises something else, so there it is only a
summary. "train CPU (s)" is the child's CPU time over the same span as "train wall (s)" (one
torch thread: on an idle machine the two are close; on a shared one, wall time includes waiting
for a core).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

from rlhf import mean_std  # benchmarks/rlhf.py, beside this script

ALGOS = ("rloo", "grpo")
LIBS = ("pgrad", "trl")
BETA = 0.05
PROMPTS_PER_BATCH = 32
K = 4
MAX_NEW_TOKENS = 6
LEARNING_RATE = 1e-3
# pgrad's settings per algorithm (RLHFConfig keys, over ALGO_DEFAULTS); see the docstring.
PGRAD_KEYS = {
    "rloo": {"beta": BETA},
    "grpo": {"beta": 0.0, "kl_loss_coef": BETA, "loss_type": "grpo"},
}
EVAL_SEED_TORCH = 1234


def batch_prompts(seed: int, iteration: int) -> list[str]:
    """The prompts of batch ``iteration`` (1-based), exactly as ``pipeline._train`` draws them."""
    from pgrad.rlhf import task

    return task.prompts(PROMPTS_PER_BATCH, seed * 1_000_003 + iteration)


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _peak_mb() -> float:
    """This process's peak RSS: ``VmHWM`` (its own address space's high-water mark). Not
    ``ru_maxrss``: Linux carries that over ``execve`` from the process that forked, so a child
    of a 700 MB parent reports at least 700 MB."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# --- children: one training run each ---------------------------------------------------------


def _train_pgrad(job: dict) -> dict:
    import torch

    from pgrad.rlhf import model as lm
    from pgrad.rlhf import pipeline, rl

    algo, seed, n = job["algo"], job["seed"], job["iterations"]
    keys = {**PGRAD_KEYS[algo], **job.get("pgrad_sets", {}), "seed": seed, "iterations": n,
            "learning_rate": LEARNING_RATE, "prompts_per_batch": PROMPTS_PER_BATCH,
            "samples_per_prompt": K, "max_new_tokens": MAX_NEW_TOKENS}  # fmt: skip
    config = pipeline.build_config(algo, [keys])
    policy, tokenizer = lm.load(job["sft"])
    torch.manual_seed(seed)
    trainer = rl.Trainer(algo, policy.eval(), tokenizer, pipeline.make_reward("task"), config)
    rss_start = _rss_mb()
    rows = []
    start, cpu = time.perf_counter(), time.process_time()
    for it in range(1, n + 1):
        stats = trainer.update(trainer.collect(batch_prompts(seed, it)))
        rows.append((stats["reward"], stats["kl"]))
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    lm.save(rl.merged(trainer.policy), tokenizer, Path(job["out"]) / "model")
    windows = [rows[i : i + 10] for i in range(0, n, 10)]  # means over 10 steps, as TRL logs
    curve = [
        {"step": min(10 * (j + 1), n), "reward": sum(r for r, _ in w) / len(w),
         "kl": sum(k for _, k in w) / len(w)}
        for j, w in enumerate(windows)
    ]  # fmt: skip
    return {"wall_s": wall, "cpu_s": cpu, "rss_start_mb": rss_start, "curve": curve}


def _positions_from_mask(module, args, kwargs):
    """Forward pre-hook on a GPT-2 body: position ids that count real tokens only (left padding
    does not shift them), as pgrad's ``sequences.run`` and ``generate`` use, where none are
    given."""
    mask, ids = kwargs.get("attention_mask"), kwargs.get("input_ids")
    given = kwargs.get("position_ids") is not None
    if not given and mask is not None and ids is not None and mask.shape == ids.shape:
        kwargs["position_ids"] = (mask.long().cumsum(-1) - 1).clamp(min=0)
    return args, kwargs


def _train_trl(job: dict) -> dict:
    import torch
    from datasets import Dataset
    from tokenizers.processors import TemplateProcessing
    from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer

    from pgrad.rlhf import model as lm
    from pgrad.rlhf import task

    algo, seed, n = job["algo"], job["seed"], job["iterations"]
    policy, tokenizer = lm.load(job["sft"])
    _, prompt_tokenizer = lm.load(job["sft"])  # TRL's copy: BOS added to every prompt
    bos = prompt_tokenizer.bos_token
    prompt_tokenizer.backend_tokenizer.post_processor = TemplateProcessing(
        single=f"{bos} $A", special_tokens=[(bos, prompt_tokenizer.bos_token_id)]
    )
    assert prompt_tokenizer("5>")["input_ids"][0] == prompt_tokenizer.bos_token_id
    eos = tokenizer.eos_token_id

    def hidden_score(prompts, completions, completion_ids, **_) -> list[float]:
        """pgrad's reward: the task score of the response as pgrad decodes it (special tokens
        kept, up to the first EOS), less 1.0 if it has no EOS."""
        out = []
        for prompt, ids in zip(prompts, completion_ids, strict=True):
            ended = len(ids) > 0 and ids[-1] == eos
            text = tokenizer.decode(ids[:-1] if ended else ids, skip_special_tokens=False)
            out.append(task.score(prompt, text) - (0.0 if ended else 1.0))
        return out

    prompts = [p for it in range(1, n + 1) for p in batch_prompts(seed, it)]
    common = dict(
        output_dir=str(Path(job["out"]) / "trl"),
        per_device_train_batch_size=PROMPTS_PER_BATCH * K,
        gradient_accumulation_steps=1,
        steps_per_generation=1,
        num_generations=K,
        max_completion_length=MAX_NEW_TOKENS,
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        min_p=None,
        repetition_penalty=1.0,
        learning_rate=LEARNING_RATE,
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=0.0,
        adam_epsilon=1e-5,
        max_grad_norm=1.0,
        beta=BETA,
        num_iterations=1,
        epsilon=0.2,
        max_steps=n,
        shuffle_dataset=False,
        disable_dropout=True,
        use_cpu=True,
        bf16=False,
        fp16=False,
        gradient_checkpointing=False,
        use_vllm=False,
        report_to="none",
        save_strategy="no",
        logging_steps=10,
        disable_tqdm=True,
        dataloader_num_workers=0,
        seed=seed,
    )
    if algo == "rloo":
        args, cls = RLOOConfig(**common, normalize_advantages=False), RLOOTrainer
    else:
        args = GRPOConfig(
            **common,
            loss_type="grpo",
            scale_rewards="group",
            use_bias_correction_kl=False,
            importance_sampling_level="token",
            mask_truncated_completions=False,
            top_entropy_quantile=1.0,
        )
        cls = GRPOTrainer
    trainer = cls(
        model=policy,
        reward_funcs=hidden_score,
        args=args,
        train_dataset=Dataset.from_dict({"prompt": prompts}),
        processing_class=prompt_tokenizer,
    )
    if not job.get("trl_raw_positions"):
        for m in (trainer.model, trainer.ref_model):
            if m is not None:
                m.base_model.register_forward_pre_hook(_positions_from_mask, with_kwargs=True)
    assert next(trainer.model.parameters()).device.type == "cpu"
    assert next(trainer.model.parameters()).dtype == torch.float32
    rss_start = _rss_mb()
    start, cpu = time.perf_counter(), time.process_time()
    trainer.train()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    lm.save(trainer.model, tokenizer, Path(job["out"]) / "model")
    curve = [
        {"step": r["step"], "reward": r.get("reward"), "kl_per_token": r.get("kl")}
        for r in trainer.state.log_history
        if "reward" in r
    ]
    return {"wall_s": wall, "cpu_s": cpu, "rss_start_mb": rss_start, "curve": curve}


def _child(job: dict) -> None:
    import torch

    torch.set_num_threads(1)
    result = (_train_pgrad if job["lib"] == "pgrad" else _train_trl)(job)
    result["peak_rss_mb"] = _peak_mb()
    (Path(job["out"]) / "train.json").write_text(json.dumps(result) + "\n")


# --- parent ---------------------------------------------------------------------------------


def _sft(seed: int, root: Path, smoke: bool = False) -> Path:
    """The seed's SFT model directory: pgrad's pipeline with the shipped settings (cached under
    ``root``); ``smoke``: 100 steps only."""
    path = root / (f"sft-smoke-s{seed}" if smoke else f"sft-s{seed}")
    if (path / "model" / "config.json").is_file():
        return path / "model"
    from pgrad.rlhf import pipeline, sft

    config = sft.SFTConfig(seed=seed, **({"steps": 100} if smoke else {}))
    return pipeline.run_sft(config, path) / "model"


def _run_child(job: dict) -> dict:
    out = Path(job["out"])
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "TOKENIZERS_PARALLELISM": "false", "ACCELERATE_USE_CPU": "true"}  # fmt: skip
    with open(out / "log.txt", "w") as log:
        proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(job)],
                              stdout=log, stderr=subprocess.STDOUT, env=env)  # fmt: skip
    if proc.returncode != 0:
        tail = (out / "log.txt").read_text().splitlines()[-15:]
        raise SystemExit(
            f"{job['lib']} {job['algo']} seed {job['seed']} failed:\n" + "\n".join(tail)
        )
    return json.loads((out / "train.json").read_text())


def _evaluate(model_dir: Path, sft_dir: Path, prompts: int, samples: int) -> dict:
    """pgrad's ``rl.evaluate`` of the final model against the SFT reference, the same for
    every run: held-out prompts (``EVAL_SEED``), ``samples`` responses each, one torch seed."""
    import torch

    from pgrad.rlhf import model as lm
    from pgrad.rlhf import pipeline, rl, task

    policy, tokenizer = lm.load(model_dir)
    reference, _ = lm.load(sft_dir)
    torch.manual_seed(EVAL_SEED_TORCH)
    return rl.evaluate(policy.eval(), reference.eval(), tokenizer, pipeline.make_reward("task"),
                       task.prompts(prompts, pipeline.EVAL_SEED), samples, MAX_NEW_TOKENS,
                       task.score)  # fmt: skip


def _git_head() -> str:
    """The checkout's commit, and whether src/ differs from it (the code the runs imported is
    named beside it)."""
    repo = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        command = ["git", "-C", str(repo), *args]
        return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()

    try:
        head, dirty = git("rev-parse", "--short", "HEAD"), git("status", "--porcelain", "src")
    except (OSError, subprocess.CalledProcessError):
        return "no git"
    return f"this checkout at {head}" + (", its src/ modified" if dirty else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--algos", nargs="+", default=list(ALGOS), choices=ALGOS)
    parser.add_argument("--libs", nargs="+", default=list(LIBS), choices=LIBS)
    parser.add_argument("--iterations", type=int, default=150)
    parser.add_argument("--eval-prompts", type=int, default=64)
    parser.add_argument("--eval-samples", type=int, default=64)
    parser.add_argument("--root", default="/tmp/pgrad-rlhf-trl")
    parser.add_argument("--out", default="docs/rlhf")
    parser.add_argument(
        "--trl-raw-positions",
        action="store_true",
        help="TRL without the position-id hook (see the docstring)",
    )
    parser.add_argument(
        "--rloo-aggregation",
        choices=["token", "response"],
        default="token",
        help="pgrad RLOO's aggregation (response: TRL's sequence-level sum; see the docstring)",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="1 seed, 3 iterations, a 100-step SFT, small eval; all under --root",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(json.loads(args.child))
        return
    import torch

    torch.set_num_threads(1)
    if args.smoke:
        args.seeds, args.iterations, args.eval_prompts, args.eval_samples = [0], 3, 8, 8
        args.out = os.path.join(args.root, "smoke")
    load_before = os.getloadavg()
    root = Path(args.root)
    runs_root = root / time.strftime("%Y%m%d-%H%M%S")
    start = time.perf_counter()
    runs = []
    sft_dirs = {}
    for seed in args.seeds:
        sft_dir = sft_dirs[seed] = _sft(seed, root, args.smoke)
        for algo in args.algos:
            for lib in args.libs:
                job = {"lib": lib, "algo": algo, "seed": seed, "iterations": args.iterations,
                       "sft": str(sft_dir), "out": str(runs_root / f"{lib}-{algo}-s{seed}"),
                       "trl_raw_positions": args.trl_raw_positions,
                       "pgrad_sets": {"aggregation": args.rloo_aggregation}
                       if algo == "rloo" else {}}  # fmt: skip
                trained = _run_child(job)
                after = _evaluate(Path(job["out"]) / "model", sft_dir, args.eval_prompts,
                                  args.eval_samples)  # fmt: skip
                runs.append({"lib": lib, "algo": algo, "seed": seed, **trained, "after": after})
                print(f"{lib:5} {algo:4} seed {seed}: score {after['task_score']:.3f}  "
                      f"KL {after['kl']:.2f}  train {trained['wall_s']:.1f} s  "
                      f"peak {trained['peak_rss_mb']:.0f} MB", flush=True)  # fmt: skip
    wall = time.perf_counter() - start
    before = {
        s: _evaluate(sft_dirs[s], sft_dirs[s], args.eval_prompts, args.eval_samples)
        for s in args.seeds
    }
    import transformers
    import trl

    import pgrad

    argv = list(sys.argv[1:])
    info = {
        "command": "python benchmarks/rlhf_trl.py " + " ".join(argv),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, torch {torch.__version__}, transformers "
        f"{transformers.__version__}, trl {trl.__version__}; one run at a time, 1 torch thread",
        "pgrad": f"imported from {Path(pgrad.__file__).parent}; {_git_head()}",
        "load_average_1min": {"start": load_before[0], "end": os.getloadavg()[0]},
        "wall_time_s": round(wall, 1),
        "iterations": args.iterations,
        "batch": f"{PROMPTS_PER_BATCH} prompts x {K} samples",
        "eval": f"{args.eval_prompts} held-out prompts x {args.eval_samples} samples",
        "pgrad_keys": PGRAD_KEYS,
        "rloo_aggregation": args.rloo_aggregation,
        "trl_raw_positions": args.trl_raw_positions,
    }
    columns = ["library", "algorithm", "score after", "KL after (nats)", "score - 0.05 KL",
               "train wall (s)", "train CPU (s)", "peak RSS (MB)", "RSS at start (MB)"]  # fmt: skip
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for algo in args.algos:
        for lib in args.libs:
            rows = [r for r in runs if r["lib"] == lib and r["algo"] == algo]
            cells = [
                mean_std([r["after"]["task_score"] for r in rows]),
                mean_std([r["after"]["kl"] for r in rows], 2),
                mean_std([r["after"]["task_score"] - BETA * r["after"]["kl"] for r in rows]),
                mean_std([r["wall_s"] for r in rows], 1),
                mean_std([r["cpu_s"] for r in rows], 1),
                mean_std([r["peak_rss_mb"] for r in rows], 0),
                mean_std([r["rss_start_mb"] for r in rows], 0),
            ]
            lines.append(f"| {lib} | {algo} | " + " | ".join(cells) + " |")
    sft_score = mean_std([b["task_score"] for b in before.values()])
    table = "\n".join(lines)
    print(f"\n{table}\n\nSFT policy (before RL): score {sft_score}")
    print(f"\n{info['command']}\n{info['machine']}; wall {wall:.0f} s")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "trl-results.json").write_text(
        json.dumps({**info, "table": table, "sft_before": before, "runs": runs}, indent=1) + "\n"
    )


if __name__ == "__main__":
    main()
