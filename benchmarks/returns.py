"""Final returns of pgrad (its shipped defaults) beside Stable-Baselines3 (rl-zoo hyperparameters).

    pip install -e '.[bench]'
    python benchmarks/returns.py --rows ppo-CartPole-v1 a2c-CartPole-v1 --seeds 0 1 2

Each (row, library, seed) trains for the row's step budget with one torch thread, then evaluates
10 deterministic episodes (SB3: ``evaluate_policy`` on a fresh env seeded ``seed + 10000``,
observation statistics frozen where the row normalises; pgrad: its own final evaluation).
With ``--eval-episodes N``, each trained policy is also evaluated on N more deterministic
episodes whose start states are the same for every library and seed (episode i starts from
``reset(seed=COMMON_EVAL_SEED + i)``): on envs whose episodes vary a lot (Acrobot: std ~15 per
episode) 10 episodes from differently seeded envs leave ~5 of noise in each seed's figure.
Runs go ``--workers`` at a time. Prints a Markdown table: mean ± std over seeds of the final
evaluation, the per-seed values, median training wall time and median SPS.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from multiprocessing import get_context
from typing import Any


def lin(value: float):
    """rl-zoo's ``lin_X``: X decayed linearly to 0 over training."""
    return lambda progress_remaining: progress_remaining * value


ZOO_PPO_CARTPOLE = {
    "n_envs": 8,
    "n_steps": 32,
    "batch_size": 256,
    "gae_lambda": 0.8,
    "gamma": 0.98,
    "n_epochs": 20,
    "ent_coef": 0.0,
    "learning_rate": ("lin", 1e-3),
    "clip_range": ("lin", 0.2),
}
# rl-zoo's MuJoCo PPO policy; "relu" stands for nn.ReLU (resolved in run_sb3).
ZOO_MUJOCO_POLICY = {
    "log_std_init": -2,
    "ortho_init": False,
    "activation_fn": "relu",
    "net_arch": {"pi": [256, 256], "vf": [256, 256]},
}
ROWS: dict[str, dict[str, Any]] = {
    "ppo-CartPole-v1": {
        "algo": "ppo",
        "env": "CartPole-v1",
        "steps": 100_000,
        "sb3": ZOO_PPO_CARTPOLE,
    },
    "ppo-Acrobot-v1": {
        "algo": "ppo",
        "env": "Acrobot-v1",
        "steps": 500_000,
        "sb3": {
            "normalize": True,
            "n_envs": 16,
            "n_steps": 256,
            "gae_lambda": 0.94,
            "gamma": 0.99,
            "n_epochs": 4,
            "ent_coef": 0.0,
        },
    },
    "ppo-LunarLander-v3": {
        "algo": "ppo",
        "env": "LunarLander-v3",
        "steps": 1_000_000,
        "sb3": {
            "n_envs": 16,
            "n_steps": 1024,
            "batch_size": 64,
            "gae_lambda": 0.98,
            "gamma": 0.999,
            "n_epochs": 4,
            "ent_coef": 0.01,
        },
    },
    "ppo-Pendulum-v1": {
        "algo": "ppo",
        "env": "Pendulum-v1",
        "steps": 200_000,
        "sb3": {
            "n_envs": 4,
            "n_steps": 1024,
            "gae_lambda": 0.95,
            "gamma": 0.9,
            "n_epochs": 10,
            "ent_coef": 0.0,
            "learning_rate": 1e-3,
            "clip_range": 0.2,
            "use_sde": True,
            "sde_sample_freq": 4,
        },
    },
    "ppo-HalfCheetah-v5": {
        "algo": "ppo",
        "env": "HalfCheetah-v5",
        "steps": 1_000_000,
        "sb3": {
            "normalize": True,
            "n_envs": 1,
            "n_steps": 512,
            "batch_size": 64,
            "gamma": 0.98,
            "learning_rate": 2.0633e-05,
            "ent_coef": 0.000401762,
            "clip_range": 0.1,
            "n_epochs": 20,
            "gae_lambda": 0.92,
            "max_grad_norm": 0.8,
            "vf_coef": 0.58096,
            "policy_kwargs": ZOO_MUJOCO_POLICY,
        },
    },
    "ppo-Hopper-v5": {
        "algo": "ppo",
        "env": "Hopper-v5",
        "steps": 1_000_000,
        "sb3": {
            "normalize": True,
            "n_envs": 1,
            "n_steps": 512,
            "batch_size": 32,
            "gamma": 0.999,
            "learning_rate": 9.80828e-05,
            "ent_coef": 0.00229519,
            "clip_range": 0.2,
            "n_epochs": 5,
            "gae_lambda": 0.99,
            "max_grad_norm": 0.7,
            "vf_coef": 0.835671,
            "policy_kwargs": ZOO_MUJOCO_POLICY,
        },
    },
    # SB3 with pgrad's shipped Hopper settings (CleanRL's MuJoCo PPO), for a same-settings row.
    "ppo-Hopper-v5-cleanrl": {
        "algo": "ppo",
        "env": "Hopper-v5",
        "steps": 1_000_000,
        "sb3": {
            "normalize": True,
            "n_envs": 1,
            "n_steps": 2048,
            "batch_size": 64,
            "n_epochs": 10,
            "learning_rate": ("lin", 3e-4),
            "gamma": 0.99,
            "gae_lambda": 0.95,
            "clip_range": 0.2,
            "clip_range_vf": 0.2,
            "ent_coef": 0.0,
            "vf_coef": 0.5,
            "max_grad_norm": 0.5,
        },
    },
    "a2c-CartPole-v1": {
        "algo": "a2c",
        "env": "CartPole-v1",
        "steps": 500_000,
        "sb3": {"n_envs": 8, "ent_coef": 0.0},
    },
    "a2c-Pendulum-v1": {
        "algo": "a2c",
        "env": "Pendulum-v1",
        "steps": 1_000_000,
        "sb3": {
            "normalize": True,
            "n_envs": 8,
            "n_steps": 8,
            "gae_lambda": 0.9,
            "gamma": 0.9,
            "use_sde": True,
            "ent_coef": 0.0,
            "max_grad_norm": 0.5,
            "learning_rate": ("lin", 7e-4),
            "use_rms_prop": True,
            "normalize_advantage": False,
            "policy_kwargs": {"log_std_init": -2, "ortho_init": False},
        },
    },
    "actor_critic-CartPole-v1": {"algo": "actor_critic", "env": "CartPole-v1", "steps": 500_000},
    # rl-zoo's SAC settings: SB3's defaults (256x256 ReLU, lr 3e-4, batch 256, tau 0.005,
    # automatic alpha), lr 1e-3 on Pendulum, 10k random steps first on MuJoCo.
    "sac-Pendulum-v1": {
        "algo": "sac",
        "env": "Pendulum-v1",
        "steps": 20_000,
        "sb3": {"n_envs": 1, "learning_rate": 1e-3},
    },
    # rl-zoo's hyperparams/sac.yml row, gSDE included (pgrad's shipped entry is the same).
    "sac-MountainCarContinuous-v0": {
        "algo": "sac",
        "env": "MountainCarContinuous-v0",
        "steps": 50_000,
        "sb3": {
            "n_envs": 1,
            "learning_rate": 3e-4,
            "buffer_size": 50_000,
            "batch_size": 512,
            "ent_coef": 0.1,
            "train_freq": 32,
            "gradient_steps": 32,
            "gamma": 0.9999,
            "tau": 0.01,
            "learning_starts": 0,
            "use_sde": True,
            "policy_kwargs": {"log_std_init": -3.67, "net_arch": [64, 64]},
        },
    },
    "sac-HalfCheetah-v5": {
        "algo": "sac",
        "env": "HalfCheetah-v5",
        "steps": 300_000,
        "sb3": {"n_envs": 1, "learning_starts": 10_000},
    },
}


COMMON_EVAL_SEED = 1_000_000


def common_evaluation(env_id: str, act: Callable[[Any], Any], episodes: int) -> float:
    """Mean undiscounted return of ``episodes`` episodes of ``act`` (observation -> action),
    episode i from ``reset(seed=COMMON_EVAL_SEED + i)``: the same start states for everyone."""
    import gymnasium as gym

    env = gym.make(env_id)
    returns = []
    for i in range(episodes):
        obs, _ = env.reset(seed=COMMON_EVAL_SEED + i)
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(act(obs))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return statistics.mean(returns)


def run_pgrad(
    row: str, seed: int, steps: int | None = None, eval_episodes: int = 0
) -> dict[str, Any]:
    import pgrad

    spec = ROWS[row]
    extra = {}
    with tempfile.TemporaryDirectory() as tmp:
        run = pgrad.train(
            spec["algo"], spec["env"], steps=steps or spec["steps"], seed=seed, run_dir=f"{tmp}/r"
        )
        summary = run.summary
        if eval_episodes:
            agent = pgrad.load(run.path)
            act = partial(agent.act, deterministic=True)
            extra["common_return"] = common_evaluation(spec["env"], act, eval_episodes)
    return {
        **extra,
        "row": row,
        "library": "pgrad",
        "seed": seed,
        "return": summary["mean_return"],
        "train_time_s": summary["train_time_s"],
        "sps": summary["sps"],
        "steps": summary["steps"],
    }


def run_sb3(
    row: str, seed: int, steps: int | None = None, eval_episodes: int = 0
) -> dict[str, Any]:
    import torch
    from stable_baselines3 import A2C, PPO, SAC
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.vec_env import VecNormalize

    torch.set_num_threads(1)
    spec = ROWS[row]
    kwargs = {
        k: lin(v[1]) if isinstance(v, tuple) and v[0] == "lin" else v
        for k, v in spec["sb3"].items()
    }
    if kwargs.get("policy_kwargs", {}).get("activation_fn") == "relu":
        kwargs["policy_kwargs"] = {**kwargs["policy_kwargs"], "activation_fn": torch.nn.ReLU}
    n_envs, normalize = kwargs.pop("n_envs"), kwargs.pop("normalize", False)
    env = make_vec_env(spec["env"], n_envs=n_envs, seed=seed)
    if normalize:
        env = VecNormalize(env, gamma=kwargs.get("gamma", 0.99))
    cls = {"ppo": PPO, "a2c": A2C, "sac": SAC}[spec["algo"]]
    model = cls("MlpPolicy", env, seed=seed, device="cpu", verbose=0, **kwargs)
    start = time.perf_counter()
    model.learn(steps or spec["steps"])
    train_time = time.perf_counter() - start
    eval_env = make_vec_env(spec["env"], n_envs=1, seed=seed + 10_000)
    if normalize:
        eval_env = VecNormalize(eval_env, training=False, norm_reward=False)
        eval_env.obs_rms = env.obs_rms
    mean, _ = evaluate_policy(model, eval_env, n_eval_episodes=10, deterministic=True)
    extra = {}
    if eval_episodes:

        def act(obs: Any) -> Any:
            if normalize:
                obs = eval_env.normalize_obs(obs)
            return model.predict(obs, deterministic=True)[0]

        extra["common_return"] = common_evaluation(spec["env"], act, eval_episodes)
    return {
        **extra,
        "row": row,
        "library": "sb3",
        "seed": seed,
        "return": float(mean),
        "train_time_s": round(train_time, 1),
        "sps": round(model.num_timesteps / train_time, 1),
        "steps": model.num_timesteps,
    }


def run(job: tuple[str, str, int, int | None, int]) -> dict[str, Any]:
    library, row, seed, steps, eval_episodes = job
    return (run_pgrad if library == "pgrad" else run_sb3)(row, seed, steps, eval_episodes)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument(
        "--libraries", nargs="+", default=["pgrad", "sb3"], choices=["pgrad", "sb3"]
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--steps", type=int, help="override every row's step budget")
    parser.add_argument(
        "--eval-episodes",
        type=int,
        default=0,
        help="also evaluate every policy on this many episodes with common start states",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    jobs = [
        (lib, row, seed, args.steps, args.eval_episodes)
        for row in args.rows
        for seed in args.seeds
        for lib in args.libraries
        if lib == "pgrad" or "sb3" in ROWS[row]
    ]
    with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool:
        results = list(pool.map(run, jobs))
    if args.json:
        print(json.dumps(results, indent=2))
    machine = platform.processor() or platform.machine()
    print(f"\nMachine: {machine}, {args.workers} runs at a time, 1 torch thread each\n")
    common = f" | {args.eval_episodes} common episodes: mean ± std | per seed" * bool(
        args.eval_episodes
    )
    print(
        "| algo | env | steps | library | final eval (mean ± std over seeds) | per seed"
        f"{common} | median train time (s) | median SPS |"
    )
    print("|---" * (8 + 2 * bool(args.eval_episodes)) + "|")
    for row in args.rows:
        for lib in args.libraries:
            rs = [r for r in results if r["row"] == row and r["library"] == lib]
            if not rs:
                continue
            cells = [
                ROWS[row]["algo"],
                ROWS[row]["env"],
                f"{args.steps or ROWS[row]['steps']:,}",
                lib,
                *_spread([r["return"] for r in rs]),
                *(_spread([r["common_return"] for r in rs]) if args.eval_episodes else []),
                f"{statistics.median(r['train_time_s'] for r in rs):.0f}",
                f"{statistics.median(r['sps'] for r in rs):,.0f}",
            ]
            print("| " + " | ".join(cells) + " |")


def _spread(values: list[float]) -> list[str]:
    """Table cells: mean ± (population) std over seeds, and the per-seed values."""
    spread = statistics.pstdev(values) if len(values) > 1 else 0.0
    return [f"{statistics.mean(values):.1f} ± {spread:.1f}", ", ".join(f"{v:.1f}" for v in values)]


if __name__ == "__main__":
    main()
