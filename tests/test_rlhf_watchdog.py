"""The RLHF watchdog: each warning on rows built to trip it (and not on healthy ones), then on
real runs with a constructed failure, and silence on a default run."""

from __future__ import annotations

import json

import pytest

from pgrad.rlhf.watchdog import RLHFWatchdog

pytest.importorskip("transformers")

HEALTHY = {"kl": 0.5, "distinct": 0.98, "no_eos": 0.0, "reward": 0.5}


def _fired(rows: list[dict[str, float]]) -> list[str]:
    dog = RLHFWatchdog()
    return [m for i, row in enumerate(rows) for m in dog.update(i + 1, {**HEALTHY, **row})]


@pytest.mark.parametrize(
    ("rows", "needle"),
    [
        ([{"kl": 0.0}, {"kl": -0.3}], "negative KL"),
        ([{"distinct": 0.98}, {"distinct": 0.7}, {"distinct": 0.3}], "diversity collapse"),
        ([{"no_eos": 0.02}, {"no_eos": 0.4}], "missing EOS"),
        (
            [{"reward": 0.1, "task_score": 0.4}, {"reward": 0.3, "task_score": 0.6},
             {"reward": 0.6, "task_score": 0.4}],
            "reward hacking",
        ),
    ],
)  # fmt: skip
def test_each_warning_fires_once_on_rows_built_to_trip_it(rows, needle):
    fired = _fired(rows + rows[-1:])  # the last row twice: still one warning
    assert len(fired) == 1 and fired[0].startswith(needle), fired


@pytest.mark.parametrize(
    "rows",
    [
        [{"kl": 0.0}, {"kl": -0.05}, {"kl": 3.0}],  # k1 noise near KL 0
        [{"distinct": 0.98}, {"distinct": 0.6}],  # fewer, not collapsed
        [{"no_eos": 0.1}, {"no_eos": 0.3}],  # risen by less than 0.25
        [{"reward": 0.1, "task_score": 0.4}, {"reward": 0.6, "task_score": 0.8}],  # both rise
        [{"reward": 0.6, "task_score": 0.8}, {"reward": 0.5, "task_score": 0.5}],  # both fall
        [{"reward": 0.1, "task_score": 0.8}, {"reward": 0.6, "task_score": 0.7}],  # a dip
    ],
)
def test_healthy_rows_raise_nothing(rows):
    assert _fired(rows) == []


def _run(tmp_path, sft_dir, name, **keys):
    from pgrad.rlhf import pipeline

    reward = keys.pop("reward", "task")
    config = pipeline.build_config(
        keys.pop("algo", "rloo"), [{"eval_prompts": 16, "eval_samples": 4, "eval_every": 0, **keys}]
    )
    path = pipeline.run_rl("rloo", config, tmp_path / name, model=sft_dir / "model", reward=reward)
    return json.loads((path / "summary.json").read_text())["warnings"]


def test_a_default_run_raises_nothing(tmp_path, sft_dir):
    assert _run(tmp_path, sft_dir, "default", iterations=30, seed=0) == []


def test_sampling_from_the_reference_is_caught_as_negative_kl(tmp_path, sft_dir, monkeypatch):
    """The bug: responses drawn from pi_ref but scored as pi_old's; E_ref[log pi - log pi_ref]
    = -KL(pi_ref || pi) < 0 once the policy has moved."""
    from pgrad.rlhf import rl
    from pgrad.rlhf.sequences import generate

    def collect(self, prompts):
        k = self.config.samples_per_prompt
        repeated = [p for p in prompts for _ in range(k)]
        return self.score(generate(self.reference, self.tokenizer, repeated, 6))

    monkeypatch.setattr(rl.Trainer, "collect", collect)
    warnings = _run(tmp_path, sft_dir, "wrong-policy", iterations=30, seed=0)
    assert any(w.startswith("negative KL") for w in warnings), warnings


def test_an_inverted_reward_is_caught_as_reward_hacking(tmp_path, sft_dir):
    """Minus the hidden score: the reward climbs to ~0 as the hidden score falls from the SFT
    policy's ~0.06 to ~0.005 within a few batches (a row per batch, so the first row holds the
    score before the fall)."""
    warnings = _run(
        tmp_path, sft_dir, "hack", iterations=20, seed=0, log_every=1,
        reward="rlhf_rewards:inverted",
    )  # fmt: skip
    assert any(w.startswith("reward hacking") for w in warnings), warnings


def test_paying_for_missing_eos_is_caught(tmp_path, sft_dir):
    warnings = _run(tmp_path, sft_dir, "eos", iterations=30, seed=0, missing_eos_penalty=-2.0)
    assert any(w.startswith("missing EOS") for w in warnings), warnings


def test_beta_zero_is_caught_as_a_diversity_collapse(tmp_path, sft_dir):
    """Nothing holds the policy near the reference: by ~50 batches under half of the responses
    are distinct (measured: 0.98 at 20 batches, 0.43 at 50, 0.12 at 100)."""
    warnings = _run(tmp_path, sft_dir, "beta0", iterations=70, seed=0, beta=0.0)
    assert any(w.startswith("diversity collapse") for w in warnings), warnings
