"""Atari PPO side by side: pgrad and Stable-Baselines3 on the same game, settings and budget;
where each one's time goes; and how close that is to the compute bound of the network.

    pip install -e '.[atari,bench]' -c constraints.txt
    python benchmarks/atari.py --steps 1000000 --threads 2 --out docs/atari      # one seed each
    python benchmarks/atari.py --steps 20000 --parts-only                          # breakdown only

Settings: CleanRL's ``ppo_atari.py`` = rl-zoo's PPO Atari row (8 envs x 128 steps, 4 epochs of
4 minibatches of 256, lr 2.5e-4 annealed linearly, clip 0.1, value clip 0.1 in pgrad (SB3's
``clip_range_vf`` the same), entropy 0.01, value coefficient 0.5, gradient clip 0.5, gamma 0.99,
GAE 0.95, the Nature CNN shared by actor and critic). Env: ``ALE/Breakout-v5`` (sticky actions
0.25) with frame skip 4, 84x84 grayscale, 4 stacked frames, 30 no-ops, episodic life, fire reset,
clipped rewards on both sides (pgrad: ``pgrad.atari``; SB3: ``make_atari_env`` +
``VecFrameStack``). Both report the true game score (ALE's, all lives) of the last 100 games.

Parts (``--parts``): the time of one PPO env step split into env stepping (random actions, the
same vector env), acting (one batched CNN forward pass over the 8 envs) and learning (the update
on a 1024-step rollout, divided by 1024), each timed alone in pgrad; their sum predicts pgrad's
SPS. The compute bound: the Nature CNN costs ~19 MFLOP forward per observation (counted below);
acting (1 forward) plus learning (4 epochs x forward + backward, ~3 forwards each) is
~13 forwards = ~250 MFLOP per env step. Dividing the machine's measured throughput on that
network (forward + backward of a 256 minibatch, which is what learning runs) by 250 MFLOP gives
the SPS a PPO learner could not exceed here even with free envs.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

ENV = "ALE/Breakout-v5"
N_ENVS, N_STEPS, EPOCHS, BATCH = 8, 128, 4, 256


def nature_cnn_flops() -> int:
    """Multiply-adds x 2 of one forward pass on a (4, 84, 84) observation."""
    layers = [(20 * 20, 32, 8 * 8 * 4), (9 * 9, 64, 4 * 4 * 32), (7 * 7, 64, 3 * 3 * 64)]
    convs = sum(positions * out * fan_in for positions, out, fan_in in layers)
    return 2 * (convs + 3136 * 512 + 512 * 5)  # and the 512 -> actions + value heads


def measured_gflops(threads: int, repeats: int = 5) -> float:
    """Forward + backward of the Nature CNN on a 256-observation minibatch, FLOP/s."""
    from gymnasium.spaces import Box

    from pgrad.encoders import NatureCNN

    torch.set_num_threads(threads)
    cnn = NatureCNN(Box(0, 255, (4, 84, 84), np.uint8))
    obs = torch.randint(0, 256, (BATCH, 4, 84, 84), dtype=torch.uint8)
    cnn(obs).sum().backward()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        cnn(obs).sum().backward()
        times.append(time.perf_counter() - start)
    return 3 * nature_cnn_flops() * BATCH / statistics.median(times) / 1e9


def parts(threads: int, steps: int = 512) -> dict[str, float]:
    """Seconds per env step of pgrad's env stepping, acting and learning, each alone."""
    import pgrad
    from pgrad.envs import make_vec_env
    from pgrad.policies import build_actor_critic
    from pgrad.train import resolve

    torch.set_num_threads(threads)
    envs = make_vec_env(ENV, N_ENVS)
    envs.reset(seed=0)
    start = time.perf_counter()
    for _ in range(steps // N_ENVS):
        envs.step(envs.action_space.sample())
    env_s = (time.perf_counter() - start) / steps
    cfg = resolve("ppo", ENV)
    model = build_actor_critic(cfg, envs.single_observation_space, envs.single_action_space)
    obs = torch.as_tensor(envs.reset(seed=0)[0])
    with torch.inference_mode():
        model(obs)
        start = time.perf_counter()
        for _ in range(steps // N_ENVS):
            model(obs)[0].sample()
    act_s = (time.perf_counter() - start) / steps
    envs.close()
    algo = pgrad.algos.get("ppo").make(cfg, make_vec_env(ENV, N_ENVS), 0)
    batch = algo.rollout.collect(algo.model)
    algo.update(batch)  # warm-up
    start = time.perf_counter()
    algo.update(batch)
    learn_s = (time.perf_counter() - start) / batch.steps
    algo.close()
    return {"env": env_s, "act": act_s, "learn": learn_s}


class Clock:
    """Total seconds spent in one bound method, wrapped on its instance."""

    def __init__(self, owner: object, name: str):
        self.total, inner = 0.0, getattr(owner, name)

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.total += time.perf_counter() - start

        setattr(owner, name, timed)


def split_pgrad(threads: int, steps: int) -> dict[str, float]:
    """Seconds per env step inside real PPO iterations of pgrad: env stepping (the vector env's
    ``step``), acting (the rest of collecting), learning (``update``)."""
    import pgrad
    from pgrad.envs import make_vec_env
    from pgrad.train import resolve

    torch.set_num_threads(threads)
    envs = make_vec_env(ENV, N_ENVS)
    env_clock = Clock(envs, "step")
    algo = pgrad.algos.get("ppo").make(resolve("ppo", ENV), envs, 0)
    collect = learn = 0.0
    done = 0
    while done < steps:
        start = time.perf_counter()
        batch = algo.rollout.collect(algo.model)
        middle = time.perf_counter()
        algo.update(batch)
        collect, learn = collect + middle - start, learn + time.perf_counter() - middle
        done += batch.steps
    algo.close()
    return {"env": env_clock.total / done, "act": (collect - env_clock.total) / done,
            "learn": learn / done}  # fmt: skip


def split_sb3(threads: int, steps: int) -> dict[str, float]:
    """The same split for Stable-Baselines3's PPO: its vector env's ``step``, the rest of
    ``collect_rollouts``, and ``train``."""
    model = sb3_ppo(0, threads)
    env_clock = Clock(model.env, "step")
    collect_clock, learn_clock = Clock(model, "collect_rollouts"), Clock(model, "train")
    model.learn(total_timesteps=steps)
    done = model.num_timesteps
    return {"env": env_clock.total / done,
            "act": (collect_clock.total - env_clock.total) / done,
            "learn": learn_clock.total / done}  # fmt: skip


def train_pgrad(steps: int, seed: int, threads: int, out: Path) -> dict:
    import pgrad

    start = time.perf_counter()
    run = pgrad.train("ppo", ENV, steps=steps, seed=seed, run_dir=out / f"pgrad-s{seed}",
                      threads=threads, eval_episodes=10)  # fmt: skip
    wall = time.perf_counter() - start
    summary = run.summary
    return {"library": "pgrad", "steps": summary["steps"], "wall_s": wall, "sps": summary["sps"],
            "eval_return": summary["mean_return"]}  # fmt: skip


def sb3_ppo(seed: int, threads: int):
    """SB3's PPO with the same settings on the same env (``make_atari_env``: its AtariWrapper)."""
    import ale_py
    import gymnasium as gym
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.vec_env import VecFrameStack

    gym.register_envs(ale_py)
    torch.set_num_threads(threads)
    envs = VecFrameStack(
        make_atari_env(ENV, n_envs=N_ENVS, seed=seed, env_kwargs={"frameskip": 1}), 4
    )

    def linear(start: float):
        return lambda remaining: remaining * start

    model = PPO(
        "CnnPolicy", envs, n_steps=N_STEPS, n_epochs=EPOCHS, batch_size=BATCH,
        learning_rate=linear(2.5e-4), clip_range=0.1, clip_range_vf=0.1, ent_coef=0.01,
        vf_coef=0.5, max_grad_norm=0.5, gamma=0.99, gae_lambda=0.95, seed=seed, device="cpu",
        verbose=0,
    )  # fmt: skip
    return model


def train_sb3(steps: int, seed: int, threads: int, out: Path) -> dict:
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.vec_env import VecFrameStack

    model = sb3_ppo(seed, threads)
    start = time.perf_counter()
    model.learn(total_timesteps=steps)
    wall = time.perf_counter() - start
    model.save(out / f"sb3-s{seed}.zip")
    recent = [e["r"] for e in model.ep_info_buffer]
    eval_envs = VecFrameStack(
        make_atari_env(ENV, n_envs=1, seed=seed + 1000, env_kwargs={"frameskip": 1}), 4
    )
    # SB3's Monitor sits under its AtariWrapper: evaluate_policy reports whole games.
    scores, _ = evaluate_policy(model, eval_envs, n_eval_episodes=10, return_episode_rewards=True)
    return {
        "library": "sb3",
        "steps": steps,
        "wall_s": wall,
        "sps": steps / wall,
        "eval_return": float(np.mean(scores)),
        "last_100_train_games": float(np.mean(recent)),
    }


def evaluate_sb3(path: Path, seed: int, games: int) -> dict:
    """A saved SB3 model (``train_sb3`` writes one) on ``games`` more whole games, deterministic,
    as ``train_sb3`` evaluates: what ``pgrad eval RUN --episodes N --seed S`` is for pgrad."""
    import ale_py
    import gymnasium as gym
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.vec_env import VecFrameStack

    gym.register_envs(ale_py)
    model = PPO.load(path, device="cpu")
    envs = VecFrameStack(make_atari_env(ENV, n_envs=1, seed=seed, env_kwargs={"frameskip": 1}), 4)
    scores, _ = evaluate_policy(model, envs, n_eval_episodes=games, return_episode_rewards=True)
    return {"games": games, "seed": seed, "mean": float(np.mean(scores)),
            "std": float(np.std(scores)), "scores": [float(x) for x in scores]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--libraries", nargs="+", default=["pgrad", "sb3"])
    parser.add_argument("--parts-only", action="store_true")
    parser.add_argument(
        "--split",
        type=int,
        default=0,
        help="also time env/act/learn inside this many steps of real PPO in both libraries",
    )
    parser.add_argument("--out", type=Path, default=Path("/tmp/pgrad-atari"))
    parser.add_argument(
        "--evaluate-sb3",
        type=Path,
        metavar="MODEL_ZIP",
        help="only evaluate this saved SB3 model on --games games from --seed",
    )
    parser.add_argument("--games", type=int, default=30)
    args = parser.parse_args()
    if args.evaluate_sb3:
        torch.set_num_threads(args.threads)
        print(json.dumps(evaluate_sb3(args.evaluate_sb3, args.seed, args.games)))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    result: dict = {"machine": f"{platform.machine()}, torch {torch.__version__}",
                    "threads": args.threads}  # fmt: skip
    gflops = measured_gflops(args.threads)
    per_step = 13 * nature_cnn_flops()
    split = parts(args.threads)
    predicted = 1 / sum(split.values())
    result.update(
        cnn_mflops_forward=nature_cnn_flops() / 1e6,
        measured_gflops=gflops,
        compute_bound_sps=gflops * 1e9 / per_step,
        parts_ms_per_step={k: 1000 * v for k, v in split.items()},
        parts_predicted_sps=predicted,
    )
    if args.split:
        result["split_ms_per_step"] = {
            name: {k: 1000 * v for k, v in split(args.threads, args.split).items()}
            for name, split in (("pgrad", split_pgrad), ("sb3", split_sb3))
        }
    print(json.dumps(result, indent=1), flush=True)
    if not args.parts_only:
        runs = []
        for library in args.libraries:
            train = train_pgrad if library == "pgrad" else train_sb3
            runs.append(train(args.steps, args.seed, args.threads, args.out))
            print(json.dumps(runs[-1], default=str), flush=True)
        result["runs"] = runs
    (args.out / "atari-results.json").write_text(json.dumps(result, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
