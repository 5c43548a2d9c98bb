"""Warnings for runs that train but fail silently, from the logged metric rows.

Each fires at most once per run:

- **entropy collapse**: before a quarter of the step budget, the policy's entropy has fallen
  below 5% of its first logged value (only for a positive first value: discrete policies; a
  Gaussian's differential entropy can be negative; not for SAC, whose temperature steers the
  entropy to a target). Exploration has stopped early.
- **value-loss explosion**: a row's value loss is over 1000x the median of the earlier rows
  and over 1 (a diverging critic grows by orders of magnitude; a shifting return scale by less,
  and a loss of 0.2 after a median of 0.001 is no explosion).
- **falling returns**: over at least 12 logged rows spanning 25% of the budget (and at least
  10,000 steps), the mean
  episode return of the last third is below that of the first third by more than 3 standard
  errors and the least-squares slope is negative. Returns that fall steadily while the
  optimizer "trains" are what a sign error in the policy gradient looks like (or a learning
  rate too high, or a policy collapsing).
"""

from __future__ import annotations

import math

import numpy as np

ENTROPY_FRACTION, EARLY = 0.05, 0.25
VALUE_LOSS_FACTOR, VALUE_LOSS_FLOOR = 1000.0, 1.0
TREND_ROWS, TREND_SPAN, TREND_MIN_STEPS, TREND_SIGMAS = 12, 0.25, 10_000, 3.0


class Watchdog:
    def __init__(self, total_steps: int):
        self.total_steps = total_steps
        self.fired: set[str] = set()
        self.first_entropy: float | None = None
        self.value_losses: list[float] = []
        self.returns: list[tuple[int, float]] = []

    def update(self, step: int, row: dict[str, float]) -> list[str]:
        """New warnings raised by the row logged at ``step``."""
        found = []
        # With a temperature (SAC's alpha) the entropy is steered to a target on purpose.
        entropy = math.nan if "alpha" in row else row.get("entropy", math.nan)
        if self.first_entropy is None and math.isfinite(entropy):
            self.first_entropy = entropy
        elif (
            self.first_entropy is not None
            and self.first_entropy > 0
            and step < EARLY * self.total_steps
            and entropy < ENTROPY_FRACTION * self.first_entropy
        ):
            found.append(
                ("entropy", f"entropy collapse: policy entropy {entropy:.3g} at step {step:,} "
                 f"is below {ENTROPY_FRACTION:.0%} of its initial {self.first_entropy:.3g} before "
                 f"{EARLY:.0%} of training; exploration has stopped (raise entropy_coef?)")
            )  # fmt: skip
        value_loss = row.get("value_loss", math.nan)
        if math.isfinite(value_loss):
            if len(self.value_losses) >= 5:
                median = float(np.median(self.value_losses))
                if value_loss > max(VALUE_LOSS_FACTOR * median, VALUE_LOSS_FLOOR):
                    found.append(
                        ("value_loss", f"value-loss explosion: {value_loss:.3g} at step "
                         f"{step:,}, over {VALUE_LOSS_FACTOR:.0f}x the median {median:.3g} so far "
                         "(rewards unscaled? try normalize_reward or a lower learning_rate)")
                    )  # fmt: skip
            self.value_losses.append(value_loss)
        episode_return = row.get("episode_return", math.nan)
        if math.isfinite(episode_return):
            self.returns.append((step, episode_return))
            trend = self._falling_returns()
            if trend:
                found.append(("trend", trend))
        new = [message for kind, message in found if kind not in self.fired]
        self.fired.update(kind for kind, _ in found)
        return new

    def _falling_returns(self) -> str | None:
        if len(self.returns) < TREND_ROWS:
            return None
        steps = np.array([s for s, _ in self.returns], dtype=float)
        values = np.array([v for _, v in self.returns])
        if steps[-1] - steps[0] < max(TREND_SPAN * self.total_steps, TREND_MIN_STEPS):
            return None
        third = len(values) // 3
        first, last = values[:third], values[-third:]
        stderr = math.sqrt(first.var(ddof=1) / third + last.var(ddof=1) / third)
        slope = np.polyfit(steps, values, 1)[0]
        if last.mean() < first.mean() - TREND_SIGMAS * stderr and slope < 0:
            return (
                f"falling returns: mean episode return went from {first.mean():.3g} to "
                f"{last.mean():.3g} between steps {int(steps[0]):,} and {int(steps[-1]):,}; "
                "returns falling steadily during training are the signature of a sign error in "
                "the policy gradient (or of a too-high learning rate)"
            )
        return None
