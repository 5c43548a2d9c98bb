"""The playground's fixed menu: the envs and algorithms a learner may pick, and the knobs.

The browser chooses by key from these tables and nothing else: it can never name an env id, a
file or a config key of its own. Each knob says in one line what it does to the gradient

    grad J(theta) = E[ sum_t grad log pi_theta(a_t | s_t) * Psi_t ].
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from pgrad.playground.gridworld import ENV_ID as GRIDWORLD_ID

RPS = "RockPaperScissors"
"""The lab's rock-paper-scissors game (``pgrad.lab.rps``): not a Gymnasium env, its own mode."""


@dataclass(frozen=True)
class Env:
    key: str
    """What the browser sends."""
    gym_id: str
    """What pgrad trains on (``module:Id`` for the gridworld, so its runs load elsewhere)."""
    label: str
    actions: tuple[str, ...]
    """Names of the discrete actions, or of the continuous action's dimensions."""
    continuous: bool
    steps: int
    """The playground's default budget (env steps; rounds for rock-paper-scissors)."""
    about: str


ENVS: dict[str, Env] = {
    e.key: e
    for e in [
        Env("CartPole-v1", "CartPole-v1", "CartPole", ("push left", "push right"), False,
            100_000, "Balance a pole on a cart; +1 for every step it stays up (500 at most)."),
        Env("Acrobot-v1", "Acrobot-v1", "Acrobot", ("torque -1", "torque 0", "torque +1"),
            False, 100_000, "Swing a two-link arm above the bar; -1 every step until it does."),
        Env("Pendulum-v1", "Pendulum-v1", "Pendulum (continuous)", ("torque",), True, 60_000,
            "Swing a pendulum up and hold it; the action is a torque in [-2, 2]."),
        Env("LunarLander-v3", "LunarLander-v3", "LunarLander",
            ("nothing", "left engine", "main engine", "right engine"), False, 300_000,
            "Land between the flags; 200 is solved. Slow: give it minutes."),
        Env("GridWorld", GRIDWORLD_ID, "GridWorld 5x5", ("up", "right", "down", "left"), False,
            30_000, "Walk to the green goal around the lava: +1 at the goal, -1 in lava."),
        Env(RPS, RPS, "Rock-paper-scissors (lab)", ("rock", "paper", "scissors"), False, 3_000,
            "A softmax policy against an opponent that best-responds to it; equilibrium is "
            "1/3 each."),
    ]
}  # fmt: skip


@dataclass(frozen=True)
class Knob:
    key: str
    """The pgrad config key it sets (``baseline`` picks reinforce or reinforce_baseline)."""
    label: str
    explain: str
    kind: str  # "float", "int" or "bool"
    low: float = 0.0
    high: float = 1.0
    log: bool = False
    """Slider on a log scale (the learning rate)."""


KNOBS: dict[str, Knob] = {
    k.key: k
    for k in [
        Knob("learning_rate", "learning rate",
             "How far theta moves along the estimated gradient per update: too big overshoots, "
             "too small crawls.", "float", 1e-5, 1e-1, log=True),
        Knob("gamma", "gamma (discount)",
             "Weights a reward k steps ahead by gamma^k in Psi_t: lower is a shorter horizon, "
             "less variance, more bias.", "float", 0.8, 1.0),
        Knob("gae_lambda", "lambda (GAE)",
             "Mixes TD errors into Psi_t: 0 is the one-step TD advantage (low variance, "
             "biased), 1 the Monte Carlo return.", "float", 0.0, 1.0),
        Knob("entropy_coef", "entropy coefficient",
             "Adds beta * grad H(pi): pushes the policy to stay random; 0 lets it collapse onto "
             "one action.", "float", 0.0, 0.1),
        Knob("baseline", "baseline V(s)",
             "Subtracts a learned V(s_t) from the return: the same expected gradient, far less "
             "variance.", "bool"),
        Knob("normalize_advantage", "normalise advantages",
             "Rescales Psi_t in each batch to mean 0, std 1: the step no longer depends on the "
             "reward scale.", "bool"),
        Knob("n_steps", "n_steps (rollout length)",
             "Env steps per env before each update: longer rollouts, less noisy gradients, "
             "fewer updates.", "int", 1, 2048, log=True),
        Knob("clip_range", "clip range (PPO)",
             "PPO drops the gradient once pi_new/pi_old leaves [1-eps, 1+eps]: no single batch "
             "moves the policy far.", "float", 0.05, 0.5),
    ]
}  # fmt: skip


@dataclass(frozen=True)
class Algo:
    key: str
    """The pgrad algorithm (``pgrad algos``)."""
    label: str
    knobs: tuple[str, ...]
    continuous_only: bool = False
    log_every: int = 1
    """Env steps between metric rows: every update for the batch methods, every few hundred
    steps for those that update every step or two."""


_PG = ("learning_rate", "gamma", "entropy_coef", "baseline", "normalize_advantage")
_AC = ("learning_rate", "gamma", "gae_lambda", "entropy_coef", "normalize_advantage", "n_steps")
ALGOS: dict[str, Algo] = {
    a.key: a
    for a in [
        Algo("reinforce", "REINFORCE", _PG),
        Algo("reinforce_baseline", "REINFORCE + baseline", _PG),
        Algo("actor_critic", "Actor-critic (one-step)", _AC, log_every=400),
        Algo("a2c", "A2C", _AC, log_every=400),
        Algo("ppo", "PPO", (*_AC, "clip_range")),
        Algo("sac", "SAC", ("learning_rate", "gamma"), continuous_only=True, log_every=250),
    ]
}
RPS_ALGOS = ("reinforce",)
RPS_KNOBS = ("learning_rate",)

FIXED: dict[str, Any] = {
    "normalize_obs": False,  # the viewer acts on raw observations, as the policy must then see
    "checkpoint_every": 5_000,  # the estimator lab measures the latest checkpoint
    "keep_checkpoints": 2,
    "eval_episodes": 5,
    "device": "cpu",
    "threads": 1,
}
"""Settings the playground itself chooses for every gym run (not knobs)."""
MAX_STEPS = 2_000_000
MAX_ROUNDS = 20_000
MAX_SEED = 2**31 - 1
"""The largest seed the playground takes (seeds are 0 and up)."""


def knobs_of(algo: str, env: str) -> tuple[str, ...]:
    return RPS_KNOBS if env == RPS else ALGOS[algo].knobs


def compatible(algo: str, env: str) -> str | None:
    """Why ``algo`` cannot run on ``env``, or None."""
    if env == RPS:
        return None if algo in RPS_ALGOS else "rock-paper-scissors is played by REINFORCE only"
    if ALGOS[algo].continuous_only and not ENVS[env].continuous:
        return f"{ALGOS[algo].label} needs continuous actions: choose Pendulum-v1"
    return None


def menu() -> dict[str, Any]:
    """Everything the page needs to draw the form."""
    return {
        "envs": [asdict(e) for e in ENVS.values()],
        "algos": [asdict(a) for a in ALGOS.values()],
        "knobs": [asdict(k) for k in KNOBS.values()],
        "rps": {"env": RPS, "algos": list(RPS_ALGOS), "knobs": list(RPS_KNOBS)},
    }
