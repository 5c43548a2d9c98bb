"""The start form: what the browser may send, and the check that turns it into a ``RunSpec``.

The request names an env and an algorithm by key from ``choices`` and sets knobs, nothing else:
an unknown field is refused by the model (``extra="forbid"``). The values are then checked by
pgrad's own config resolution (``pgrad.train.resolve``), so a learning rate of -1 is refused with
the message ``pgrad train`` would print, and nothing starts. Values pgrad accepts but the page's
sliders do not offer (a learning rate of 1e6) are refused too: each knob must lie within the
range ``choices.KNOBS`` advertises, the seed within ``0..choices.MAX_SEED``.
"""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from pgrad.config import at_least, positive
from pgrad.errors import PgradError
from pgrad.playground import choices
from pgrad.playground.worker import RunSpec
from pgrad.train import resolve

EnvKey = Literal[tuple(choices.ENVS)]  # type: ignore[valid-type]
AlgoKey = Literal[tuple(choices.ALGOS)]  # type: ignore[valid-type]


class RunRequest(BaseModel):
    """The body of ``POST /api/runs``: an env, an algorithm, a budget, a seed, the knobs."""

    model_config = ConfigDict(extra="forbid")

    env: EnvKey
    algo: AlgoKey
    steps: int | None = None
    seed: int | None = None
    learning_rate: float | None = None
    gamma: float | None = None
    gae_lambda: float | None = None
    entropy_coef: float | None = None
    baseline: bool | None = None
    normalize_advantage: bool | None = None
    n_steps: int | None = None
    clip_range: float | None = None


class FormError(PgradError):
    """Input the form refuses: ``field`` is the knob to mark (None: the form as a whole)."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


def field_of(message: str) -> str | None:
    """The knob a pgrad config message is about (it names the key first, or quoted)."""
    for key in re.findall(r"[a-z_]+", message)[:4]:
        if key in choices.KNOBS or key in ("steps", "seed"):
            return key
    return None


def check(request: RunRequest) -> RunSpec:
    """The run ``request`` asks for, checked all the way; ``FormError`` if anything is wrong."""
    values = request.model_dump(exclude_none=True)
    env, algo = choices.ENVS[values.pop("env")], values.pop("algo")
    steps, seed = values.pop("steps", env.steps), values.pop("seed", 0)
    baseline = values.pop("baseline", None)
    if baseline is not None:
        if algo not in ("reinforce", "reinforce_baseline"):
            raise FormError("baseline is a REINFORCE knob: the actor-critics always use V(s)",
                            "baseline")  # fmt: skip
        algo = "reinforce_baseline" if baseline else "reinforce"
    reason = choices.compatible(algo, env.key)
    if reason:
        raise FormError(reason, "algo")
    knobs = choices.knobs_of(algo, env.key)
    for key in values:
        if key not in knobs:
            raise FormError(f"{key} is not a knob of {choices.ALGOS[algo].label} here", key)
    label = f"{choices.ALGOS[algo].label} on {env.label}"
    if not 0 <= seed <= choices.MAX_SEED:
        raise FormError(f"seed must be in [0, {choices.MAX_SEED}], got {seed}", "seed")
    if env.key == choices.RPS:
        _check_rps(steps, seed, values)
        _check_ranges(values)
        return RunSpec(algo, env.key, env.gym_id, steps, seed, values, label)
    if steps > choices.MAX_STEPS:
        raise FormError(f"steps must be <= {choices.MAX_STEPS:,} in the playground", "steps")
    overrides = {**fixed(algo), **values}
    try:
        resolve(algo, env.gym_id, steps, seed, **overrides)
    except PgradError as e:
        raise FormError(str(e), field_of(str(e))) from None
    _check_ranges(values)
    return RunSpec(algo, env.key, env.gym_id, steps, seed, overrides, label)


def _check_ranges(knobs: dict[str, Any]) -> None:
    """Each knob within its slider's range (after pgrad's own checks, so that a value pgrad
    refuses gets pgrad's message)."""
    for key, value in knobs.items():
        knob = choices.KNOBS[key]
        if knob.kind != "bool" and not knob.low <= value <= knob.high:
            raise FormError(f"{key} must be in [{knob.low:g}, {knob.high:g}] in the playground, "
                            f"got {value:g}", key)  # fmt: skip


def fixed(algo: str) -> dict[str, Any]:
    """What the playground sets itself for ``algo``, under the knobs."""
    out = {**choices.FIXED, "log_every": choices.ALGOS[algo].log_every}
    if algo in ("a2c", "actor_critic"):
        out["advantage"] = "gae"  # so that the lambda knob acts (lambda 1: n-step returns)
    return out


def _check_rps(rounds: int, seed: int, values: dict[str, Any]) -> None:
    """Rock-paper-scissors has no pgrad config: the same checks, with the same messages."""
    given = SimpleNamespace(steps=rounds, seed=seed, learning_rate=values.get("learning_rate", 1))
    try:
        at_least(given, "steps", 10)
        at_least(given, "seed", 0)
        positive(given, "learning_rate")
    except PgradError as e:
        raise FormError(str(e), field_of(str(e))) from None
    if rounds > choices.MAX_ROUNDS:
        raise FormError(f"steps must be <= {choices.MAX_ROUNDS:,} rounds here", "steps")


def defaults(algo: str, env_key: str) -> dict[str, Any]:
    """The knobs' starting values for ``algo`` on ``env_key``: pgrad's own defaults there."""
    env = choices.ENVS[env_key]
    if env.key == choices.RPS:
        return {"learning_rate": 0.1, "steps": env.steps, "seed": 0}
    if choices.compatible(algo, env.key):
        return {}
    config = resolve(algo, env.gym_id, env.steps, 0, **fixed(algo))
    values = {k: getattr(config, k) for k in choices.ALGOS[algo].knobs if hasattr(config, k)}
    return {**values, "steps": env.steps, "seed": 0}
