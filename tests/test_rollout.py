"""Rollout collection, step by step, against a hand-scripted env under both autoreset modes."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from pgrad.envs import make_vec_env
from pgrad.rollout import Rollout, collect_episodes


class ScriptedEnv(gym.Env):
    """Episode k lasts ``lengths[k]`` steps and ends as ``ends[k]`` ("terminated"/"truncated").

    The observation is 100 * (k + 1) + t: episode k, step t within it (t = 0 after reset), so
    every stored observation names where it came from. Rewards are 1 per step.
    """

    observation_space = gym.spaces.Box(0.0, 1e6, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, lengths, ends):
        self.lengths, self.ends = lengths, ends
        self.episode = -1

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.episode += 1
        self.t = 0
        return self._obs(), {}

    def _obs(self):
        return np.array([100.0 * (self.episode + 1) + self.t], dtype=np.float32)

    def step(self, action):
        self.t += 1
        k = self.episode % len(self.lengths)
        done = self.t == self.lengths[k]
        terminated = done and self.ends[k] == "terminated"
        truncated = done and self.ends[k] == "truncated"
        return self._obs(), 1.0, terminated, truncated, {}


class ObsValueModel(torch.nn.Module):
    """A uniform policy whose critic reads the observation: V(s) = s, so values are traceable."""

    def forward(self, obs):
        return torch.distributions.Categorical(logits=torch.zeros(obs.shape[0], 2)), self.value(obs)

    def value(self, obs):
        return obs[:, 0].clone()


def make_envs(mode, scripts):
    fns = [lambda s=s: ScriptedEnv(*s) for s in scripts]
    return SyncVectorEnv(fns, autoreset_mode=mode)


T, F = True, False

SCRIPTS = [
    ([2, 3], ["terminated", "truncated"]),  # env 0: a 2-step terminated, then a 3-step truncated
    ([3, 1], ["truncated", "terminated"]),  # env 1: a 3-step truncated, then a 1-step terminated
]


def transitions(batch, env):
    """(obs, terminated, truncated, next_value) of the masked steps of sub-env ``env``."""
    m = batch.mask[:, env]
    return list(
        zip(
            batch.obs[m, env, 0].tolist(),
            batch.terminated[m, env].tolist(),
            batch.truncated[m, env].tolist(),
            batch.next_values[m, env].tolist(),
            strict=True,
        )
    )


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
def test_collect_episodes_keeps_exactly_the_real_transitions(mode):
    envs = make_envs(mode, SCRIPTS)
    batch = collect_episodes(envs, ObsValueModel(), episodes_per_env=2, seed=0)
    # Env 0: episode 1 (obs 100, 101; terminated at its 2nd step), episode 2 (obs 200..202,
    # truncated at its 3rd step; the next value is V(final obs) = 203 even though the env reset).
    assert transitions(batch, 0) == [
        (100.0, False, False, 101.0),
        (101.0, True, False, 102.0),  # terminated: next value stored but never bootstrapped
        (200.0, False, False, 201.0),
        (201.0, False, False, 202.0),
        (202.0, False, True, 203.0),
    ]
    assert transitions(batch, 1) == [
        (100.0, False, False, 101.0),
        (101.0, False, False, 102.0),
        (102.0, False, True, 103.0),
        (200.0, True, False, 201.0),
    ]
    assert sorted(batch.episode_returns.tolist()) == [1.0, 2.0, 3.0, 3.0]
    assert sorted(batch.episode_lengths.tolist()) == [1, 2, 3, 3]
    assert batch.steps == 9
    # Rewards, actions and log-probs of masked steps line up with the real transitions.
    assert batch.rewards[batch.mask].tolist() == [1.0] * 9
    assert torch.allclose(batch.log_probs[batch.mask], torch.full((9,), float(np.log(0.5))))


def test_next_step_autoreset_steps_are_masked():
    envs = make_envs(AutoresetMode.NEXT_STEP, SCRIPTS)
    batch = collect_episodes(envs, ObsValueModel(), episodes_per_env=2, seed=0)
    obs, mask = batch.obs[:, 0, 0].tolist(), batch.mask[:, 0].tolist()
    # Env 0's steps: 100, 101 | 102 (final obs; its step is the ignored autoreset step) | 200, ...
    assert obs[:4] == [100.0, 101.0, 102.0, 200.0]
    assert mask[:4] == [True, True, False, True]
    assert batch.rewards[2, 0].item() == 0.0  # the autoreset step's reward is 0 and unused


def test_same_step_has_no_autoreset_steps():
    envs = make_envs(AutoresetMode.SAME_STEP, SCRIPTS)
    batch = collect_episodes(envs, ObsValueModel(), episodes_per_env=2, seed=0)
    obs = batch.obs[:, 0, 0].tolist()
    assert obs[:5] == [100.0, 101.0, 200.0, 201.0, 202.0]
    assert batch.mask[:5, 0].all()


def test_later_episodes_are_masked_so_short_ones_are_not_favoured():
    # Env 0's episodes are short, env 1's long: env 0 keeps running while env 1 finishes,
    # but only its first episode counts.
    scripts = [([1], ["terminated"]), ([5], ["terminated"])]
    envs = make_envs(AutoresetMode.NEXT_STEP, scripts)
    batch = collect_episodes(envs, ObsValueModel(), episodes_per_env=1, seed=0)
    assert batch.mask[:, 0].sum().item() == 1
    assert batch.mask[:, 1].sum().item() == 5
    assert sorted(batch.episode_lengths.tolist()) == [1, 5]


def test_per_env_quotas_and_policy_without_critic():
    policy = torch.nn.Module()
    policy.forward = lambda obs: (
        torch.distributions.Categorical(logits=torch.zeros(obs.shape[0], 2)),
        None,
    )
    envs = make_envs(AutoresetMode.NEXT_STEP, SCRIPTS)
    batch = collect_episodes(envs, policy, episodes_per_env=np.array([1, 2]), seed=0)
    assert len(batch.episode_returns) == 3
    assert torch.equal(batch.next_values, torch.zeros_like(batch.next_values))


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        (
            AutoresetMode.NEXT_STEP,
            # (obs, terminated, truncated, next value) of env 0's kept steps, rollout by rollout.
            [
                [(100.0, F, F, 101.0), (101.0, T, F, 102.0)],  # then 102: autoreset step, masked
                [(200.0, F, F, 201.0), (201.0, F, F, 202.0), (202.0, F, T, 203.0)],
                [(300.0, F, F, 301.0), (301.0, T, F, 302.0)],  # first step: autoreset, masked
            ],
        ),
        (
            AutoresetMode.SAME_STEP,
            [
                [(100.0, F, F, 101.0), (101.0, T, F, 102.0), (200.0, F, F, 201.0)],
                [(201.0, F, F, 202.0), (202.0, F, T, 203.0), (300.0, F, F, 301.0)],
                [(301.0, T, F, 302.0), (400.0, F, F, 401.0), (401.0, F, F, 402.0)],
            ],
        ),
    ],
)
def test_fixed_length_rollouts_span_episodes_and_bootstrap_at_the_cut(mode, expected):
    envs = make_envs(mode, SCRIPTS)
    rollout = Rollout(envs, n_steps=3, seed=0)
    model = ObsValueModel()
    for want in expected:
        batch = rollout.collect(model)
        assert batch.obs.shape[:2] == (3, 2)
        assert transitions(batch, 0) == want


def test_episode_returns_are_true_returns_under_reward_normalisation():
    envs = make_vec_env("CartPole-v1", 4, normalize_reward=True)
    rollout = Rollout(envs, n_steps=200, seed=0)
    batch = rollout.collect(ObsValueModel())
    assert len(batch.episode_returns) > 4
    # CartPole pays 1 per step: the true return is the length, whatever the wrapper scaled.
    assert batch.episode_returns.tolist() == batch.episode_lengths.astype(float).tolist()
    assert not torch.allclose(batch.rewards[batch.mask], torch.ones(batch.steps))


def test_reward_scaling_restarts_its_discounted_return_at_truncations():
    """Acrobot: reward -1 per step, truncated at 500. The accumulator behind the reward scale
    follows G = gamma G + r within an episode and restarts after the truncation (as SB3 does;
    Gymnasium's own wrapper would carry it on), skipping the ignored autoreset step."""
    from pgrad.envs import NormalizeReward, _find

    envs = make_vec_env("Acrobot-v1", 1, normalize_reward=True, gamma=0.9)
    envs.reset(seed=0)
    wrapper = _find(envs, NormalizeReward)
    action = np.zeros(1, dtype=np.int64)  # Acrobot never swings up with a constant torque
    expected = 0.0
    seen = []  # every G the scale has been estimated from
    for t in range(503):
        _, scaled, terminated, truncated, _ = envs.step(action)
        assert not terminated.any()
        if t == 500:  # the autoreset step: ignored
            assert wrapper.accumulated_reward[0] == 0.0
            continue
        expected = 0.9 * expected - 1.0 if t != 501 else -1.0
        seen.append(expected)
        if t >= 10:  # the reward over the std of all G so far (past the estimator's prior)
            assert scaled[0] == pytest.approx(-1.0 / np.sqrt(np.var(seen) + 1e-8), rel=1e-3)
        if truncated[0]:
            assert t == 499
            expected = 0.0
        assert wrapper.accumulated_reward[0] == pytest.approx(expected, abs=1e-5)


def test_a_resume_in_fresh_episodes_does_not_replay_the_runs_first_starts():
    """Where an env's state cannot be saved (MuJoCo), a resume builds it anew with the run's
    seed and starts new episodes: seeded from the restored sampling generator, so that they
    are not the run's first starts again, and the same checkpoint gives the same starts."""

    def fresh() -> Rollout:  # what a run (or a resume) builds: its env, reset with its seed
        torch.manual_seed(0)
        return Rollout(make_vec_env("Pendulum-v1", 2), n_steps=4, seed=0)

    run = fresh()
    saved, seen = run.state(), [run.stepper.obs.copy()]
    for _ in range(3):  # the run's next starts, drawn on from its seed
        run.stepper.reset(None)
        seen.append(run.stepper.obs.copy())
    starts = []
    for _ in range(2):
        resumed = fresh()
        resumed.load_state(saved, resumed.stepper.envs, env_restored=False)
        starts.append(resumed.stepper.obs.copy())
    assert not any(np.allclose(starts[0], obs) for obs in seen)
    np.testing.assert_array_equal(starts[0], starts[1])
