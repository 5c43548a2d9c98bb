"""Configs: dataclasses of documented fields, resolved from defaults, files and ``--set``.

Precedence, lowest first: the dataclass defaults, the shipped per-env defaults
(``defaults.yaml``), the user's ``--config FILE.yaml``, ``--set key=value`` overrides, and the
explicit ``--steps``/``--seed``. Every value is type-checked and range-checked; anything wrong
raises ``ConfigError`` with a one-line message naming the key and what was expected.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from pgrad import device
from pgrad.errors import PgradError


class ConfigError(PgradError):
    """A config key that does not exist, or a value of the wrong type or range."""


@dataclass
class RunConfig:
    """What every training run has, control or RLHF: its seed, the optimizer's step size and
    gradient clip, and the cadence of logging, evaluation and checkpoints."""

    seed: int = 0
    learning_rate: float = 1e-3
    max_grad_norm: float | None = None
    """Clip the global gradient norm to this (None: no clipping)."""
    normalize_advantage: bool = True
    """Standardise Psi_t over each batch (for plain REINFORCE Psi_t = G_t: the returns)."""
    log_every: int = 2000
    """Write a metrics row (averaged over the updates since the last) every this many steps."""
    eval_every: int = 0
    """Evaluate every this many steps during training (0: only at the end)."""
    checkpoint_every: int = 50_000
    keep_checkpoints: int = 3
    device: str = "auto"
    """Where the learner runs: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (``pgrad.device``:
    ``auto`` is the CPU for MLP policies, the GPU for language models where there is one)."""

    def check(self) -> None:
        """Range checks; raise ``ConfigError`` on the first violation."""
        try:
            device.check(self.device)
        except PgradError as e:
            raise ConfigError(str(e)) from None
        at_least(self, "seed", 0)
        at_least(self, "log_every", 1)
        at_least(self, "eval_every", 0)
        at_least(self, "checkpoint_every", 1)
        at_least(self, "keep_checkpoints", 1)
        positive(self, "learning_rate")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            raise ConfigError(f"max_grad_norm must be > 0 or null, got {self.max_grad_norm}")


@dataclass
class Config(RunConfig):
    """Settings shared by every control algorithm (Stable-Baselines3 names where they exist)."""

    steps: int = 100_000
    """Environment steps to train for (transitions trained on)."""
    n_envs: int = 8
    """Parallel environments in the vector env."""
    vectorization: Literal["auto", "sync", "async", "envpool"] = "auto"
    """Vector env (``--vec``): ``auto`` takes the env's native vectorised version where it has one
    (CartPole), else ``sync`` (one process); ``async`` runs each env in a subprocess; ``envpool``
    steps them in EnvPool's C++ thread pool (Atari, MuJoCo; the ``envpool`` extra)."""
    gamma: float = 0.99
    """Discount factor."""
    hidden_sizes: tuple[int, ...] = (64, 64)
    activation: Literal["tanh", "relu", "elu", "gelu"] = "tanh"
    entropy_coef: float = 0.0
    normalize_obs: bool = False
    """Normalise observations by running mean and variance (Gymnasium's NormalizeObservation);
    the statistics are saved with the agent."""
    normalize_reward: bool = False
    """Scale rewards by the running std of the discounted return (Gymnasium's NormalizeReward)."""
    eval_episodes: int = 10
    """Episodes of the final evaluation (deterministic actions)."""
    threads: int = 1
    """torch intra-op threads and NumPy's BLAS threads (process-wide, as ``torch.set_num_threads``
    is); small networks run fastest (and reproducibly) on one."""
    fast: bool = True
    """Act in NumPy, compute A2C's/PPO's gradient by hand and take the optimizer's fast step where
    the model allows (``pgrad.fast``: the same math, ~2-3x fewer microseconds on small MLPs);
    false: everything through torch."""
    nan_retries: int = 0
    """On a NaN/Inf loss or gradient, go back to the last checkpoint this many times with the
    learning rate times ``nan_lr_factor`` before stopping the run."""
    nan_lr_factor: float = 0.5

    def check(self) -> None:
        super().check()
        at_least(self, "steps", 1)
        at_least(self, "n_envs", 1)
        at_least(self, "eval_episodes", 1)
        at_least(self, "threads", 1)
        at_least(self, "nan_retries", 0)
        if not 0.0 < self.nan_lr_factor < 1.0:
            raise ConfigError(f"nan_lr_factor must be in (0, 1), got {self.nan_lr_factor}")
        if not 0.0 <= self.gamma <= 1.0:
            raise ConfigError(f"gamma must be in [0, 1], got {self.gamma}")
        at_least(self, "entropy_coef", 0)
        if any(h < 1 for h in self.hidden_sizes):
            raise ConfigError(f"hidden_sizes must be positive, got {list(self.hidden_sizes)}")


@dataclass
class PolicyConfig(Config):
    """Settings of the policy network (and of the critic, for algorithms that have one)."""

    value_coef: float = 0.5
    """Weight of the critic's regression loss."""
    shared: bool | None = None
    """Critic on the policy's own body (and encoder) instead of its own; null: shared for a CNN
    encoder (one trunk, as CleanRL and Stable-Baselines3 do on Atari), not for an MLP."""
    encoder: Literal["auto", "mlp", "cnn"] = "auto"
    """Observation encoder (``pgrad.encoders``): ``auto`` is the Nature CNN for image
    observations (a rank-3 ``Box``), a flat MLP input otherwise."""
    std: Literal["parameter", "state", "gsde"] = "parameter"
    """Gaussian policies: state-independent or state-dependent standard deviation, or
    generalized state-dependent exploration (see ``policies.GaussianPolicy``)."""
    gsde_sample_every: int = 0
    """gSDE: draw new exploration matrices every this many env steps (0: at each rollout's
    start)."""
    squash: Literal["tanh"] | None = None
    """Gaussian policies: squash actions into the Box bounds with tanh."""
    log_std_init: float = 0.0
    ortho_init: bool = True
    """Orthogonal init (gain sqrt 2 hidden, 0.01 policy head); False: PyTorch's default."""
    value_head_gain: float = 0.0
    """Orthogonal gain of the critic's last layer, V(s) = w^T h(s) + b; 0: w = 0, so V(s) = 0
    before training. Stable-Baselines3 and CleanRL use 1."""

    def check(self) -> None:
        super().check()
        at_least(self, "value_coef", 0)
        at_least(self, "gsde_sample_every", 0)
        at_least(self, "value_head_gain", 0)


@dataclass
class OnPolicyConfig(PolicyConfig):
    """Fixed-length rollouts from ``n_envs`` envs, a critic, and Adam or RMSprop (A2C, PPO)."""

    n_steps: int = 5
    """Steps per env per rollout (rollout size = n_steps * n_envs)."""
    gae_lambda: float = 1.0
    optimizer: Literal["adam", "rmsprop"] = "adam"
    """``rmsprop`` is Stable-Baselines3's A2C default (alpha 0.99)."""
    adam_eps: float = 1e-5
    """epsilon of the optimizer (Adam's, or RMSprop's)."""
    anneal_lr: bool = False
    """Decay the learning rate linearly to 0 over ``steps``."""
    backend: Literal["local", "ray"] = "local"
    """``ray``: collect with ``workers`` Ray actors (A2C/PPO: synchronous rounds; A3C:
    asynchronous gradients); see ``pgrad.distributed``."""
    workers: int = 1
    """Rollout workers (Ray actors, or A3C's processes), each with ``n_envs`` envs."""
    ray_address: str | None = None
    """Ray cluster to join (``ray start --head`` prints it); None starts a local Ray instance."""

    def check(self) -> None:
        super().check()
        at_least(self, "workers", 1)
        if self.backend == "ray" and (self.normalize_obs or self.normalize_reward):
            raise ConfigError(
                "backend ray does not support normalize_obs/normalize_reward (each worker would "
                "keep its own statistics); set them to false"
            )
        at_least(self, "n_steps", 1)
        if not 0.0 <= self.gae_lambda <= 1.0:
            raise ConfigError(f"gae_lambda must be in [0, 1], got {self.gae_lambda}")
        positive(self, "adam_eps")


def positive(config: Any, key: str) -> None:
    """ConfigError unless ``config.key > 0``."""
    if not getattr(config, key) > 0:
        raise ConfigError(f"{key} must be > 0, got {getattr(config, key)}")


def at_least(config: Any, key: str, low: float) -> None:
    """ConfigError unless ``config.key >= low``."""
    value = getattr(config, key)
    if value < low:
        raise ConfigError(f"{key} must be >= {low}, got {value}")


def keys(cls: type[Config]) -> dict[str, Any]:
    """Each config key with its resolved type annotation."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def coerce(key: str, kind: Any, value: Any) -> Any:
    """``value`` as type ``kind`` (int, float, bool, str, Literal, tuple[int, ...], X | None)."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        is_null = value is None or (isinstance(value, str) and value.lower() in ("none", "null"))
        if is_null and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return coerce(key, inner[0], value)
    if origin is Literal:
        if value in args:
            return value
        raise ConfigError(f"{key} must be one of {list(args)}, got {value!r}")
    if origin is tuple:
        if isinstance(value, str):  # "64,64" or "[64, 64]" (YAML already took a well-formed one)
            text = value.strip()
            inside = text.removeprefix("[").removesuffix("]")
            items = [v.strip() for v in inside.split(",")] if inside.strip() else []
            if text.startswith("[") == text.endswith("]") and all(items) and "[" not in inside:
                value = items
        if isinstance(value, list | tuple):
            return tuple(coerce(key, args[0], v) for v in value)
        raise ConfigError(f"{key} expects a list of {args[0].__name__}, got {value!r}")
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key} expects true or false, got {value!r}")
    if kind is int:
        number = _number(value)
        if number is not None and float(number).is_integer() and abs(number) < 2**63:
            return int(number)
        raise ConfigError(f"{key} expects an integer, got {value!r}")
    if kind is float:
        number = _number(value)
        if number is not None:
            return float(number)
        raise ConfigError(f"{key} expects a number, got {value!r}")
    if kind is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key} expects a string, got {value!r}")
    raise TypeError(f"unsupported config type {kind} for {key}")


def _number(value: Any) -> float | int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value if value == value and abs(value) != float("inf") else None
    if isinstance(value, str):
        try:
            return _number(float(value.replace("_", "")))
        except ValueError:
            return None
    return None


def parse_set(item: str) -> tuple[str, Any]:
    """``"key=value"`` -> (key, value parsed as YAML, so ``true``, ``[64, 64]``, ``null`` work)."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set expects key=value, got {item!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def read_file(path: str | Path) -> dict[str, Any]:
    """A YAML mapping of config keys."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as e:
        raise ConfigError(f"cannot read config file {str(path)!r}: {e.strerror}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"config file {str(path)!r} is not valid YAML{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {str(path)!r} must hold a mapping of keys, got {type(data).__name__}"
        )
    return data


def user_layers(
    file: str | Path | dict[str, Any] | None, sets: Iterable[str]
) -> list[dict[str, Any]]:
    """The user's layers, lowest precedence first: ``--config FILE`` (or a dict), then ``--set``."""
    layers = [] if file is None else [file if isinstance(file, dict) else read_file(file)]
    return [*layers, dict(parse_set(item) for item in sets)]


def shipped_table(algo: str) -> dict[str, dict[str, Any]]:
    """Every env's defaults for ``algo`` in the shipped ``defaults.yaml``."""
    text = resources.files("pgrad").joinpath("defaults.yaml").read_text()
    return (yaml.safe_load(text) or {}).get(algo) or {}


def shipped_defaults(algo: str, env_id: str) -> dict[str, Any]:
    """The per-env defaults for ``algo``: the env's own entry, else the first entry whose
    pattern matches it (``ALE/*``: every Atari game), else none."""
    table = shipped_table(algo)
    if env_id in table:
        return dict(table[env_id] or {})
    for pattern, entry in table.items():
        if "*" in pattern and fnmatch.fnmatchcase(env_id, pattern):
            return dict(entry or {})
    return {}


RENAMED = {"analytic_gradients": "fast"}
"""Old keys still read (run directories written before the rename), as their new names."""


def build(cls: type[Config], layers: list[dict[str, Any]], algo: str) -> Config:
    """Merge ``layers`` (lowest precedence first) over ``cls``'s defaults, check, and return."""
    known = keys(cls)
    values: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if key in RENAMED and RENAMED[key] in known:
                key = RENAMED[key]
            if not isinstance(key, str) or key not in known:
                close = difflib.get_close_matches(str(key), list(known), n=1)
                listed = (f"its keys: {', '.join(known)}" if algo.startswith("rlhf")
                          else f"see `pgrad algos {algo}`")  # fmt: skip
                hint = f"; did you mean {close[0]!r}?" if close else f"; {listed}"
                raise ConfigError(f"config key {key!r} does not exist for {algo}{hint}")
            values[key] = coerce(key, known[key], value)
    config = cls(**values)
    config.check()
    return config


def to_dict(config: Config) -> dict[str, Any]:
    """Plain YAML-friendly values (tuples as lists)."""
    return {
        k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()
    }
