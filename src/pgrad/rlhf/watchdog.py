"""Warnings for RLHF runs that train but fail silently, from the logged rows (the control
watchdog's mechanism: ``update(step, row)`` returns new warnings; each fires at most once).

- **negative KL**: a row's mean k1 estimate of KL(pi || pi_ref) per response is below
  -``KL_TOLERANCE``. Sampled from pi_old, k1 = log pi_old - log pi_ref averages to a KL, which
  is never negative; a clearly negative mean says the responses came from another policy than
  the one scored (the reference, a stale copy) or the old log-probs are stale.
- **diversity collapse**: the fraction of distinct responses in a batch falls below
  ``DIVERSITY_FRACTION`` of its first logged value (and below 0.5): the policy answers every
  prompt the same way (with ``beta = 0`` nothing holds it near the reference).
- **missing EOS**: the fraction of responses that never end rises by ``EOS_RISE`` above its
  first value: the policy is learning to run on (a reward that pays for length, a missing-EOS
  penalty too small).
- **reward hacking**: with a learned or custom reward and the default task's hidden score
  logged beside it (``task_score``), the reward is above its value at the hidden score's best
  row while the hidden score has fallen below that best by more than ``HACK_FRACTION`` of it
  (and at least ``HACK_FLOOR``): the policy is exploiting the reward, not solving the task.
"""

from __future__ import annotations

import math

KL_TOLERANCE = 0.1
DIVERSITY_FRACTION = 0.5
EOS_RISE = 0.25
HACK_FRACTION, HACK_FLOOR = 0.25, 0.03


class RLHFWatchdog:
    def __init__(self):
        self.fired: set[str] = set()
        self.first: dict[str, float] = {}
        self.best_task: tuple[float, float] | None = None  # (hidden score, reward) at its best

    def update(self, step: int, row: dict[str, float]) -> list[str]:
        """New warnings raised by the row logged at iteration ``step``."""
        found = []
        for key in ("distinct", "no_eos"):
            if key not in self.first and math.isfinite(row.get(key, math.nan)):
                self.first[key] = row[key]
        kl = row.get("kl", math.nan)
        if kl < -KL_TOLERANCE:
            found.append(("kl", f"negative KL: the mean k1 estimate of KL(pi || pi_ref) is "
                          f"{kl:.3g} nats at iteration {step}, and a KL is never negative; the "
                          "responses were not sampled from the policy that scored them (or the "
                          "old log-probs are stale)"))  # fmt: skip
        distinct, first = row.get("distinct", math.nan), self.first.get("distinct", math.nan)
        if distinct < min(DIVERSITY_FRACTION * first, 0.5):
            found.append(("distinct", f"diversity collapse: {distinct:.0%} of the responses are "
                          f"distinct at iteration {step} (first {first:.0%}); the policy gives "
                          "the same answers everywhere (beta too small?)"))  # fmt: skip
        no_eos, first = row.get("no_eos", math.nan), self.first.get("no_eos", math.nan)
        if no_eos > first + EOS_RISE:
            found.append(("no_eos", f"missing EOS: {no_eos:.0%} of the responses never end at "
                          f"iteration {step} (first {first:.0%}); the policy is learning to run "
                          "on (raise missing_eos_penalty?)"))  # fmt: skip
        hack = self._hacking(row)
        if hack:
            found.append(("hack", f"reward hacking at iteration {step}: {hack}"))
        new = [message for kind, message in found if kind not in self.fired]
        self.fired.update(kind for kind, _ in found)
        return new

    def _hacking(self, row: dict[str, float]) -> str | None:
        task, reward = row.get("task_score", math.nan), row.get("reward", math.nan)
        if not (math.isfinite(task) and math.isfinite(reward)):
            return None
        if self.best_task is None or task > self.best_task[0]:
            self.best_task = (task, reward)
            return None
        best, reward_then = self.best_task
        if best - task > max(HACK_FRACTION * abs(best), HACK_FLOOR) and reward > reward_then:
            return (f"the reward rose from {reward_then:.3g} to {reward:.3g} while the hidden "
                    f"task score fell from {best:.3g} to {task:.3g}")  # fmt: skip
        return None
