"""SAC's parts against hand-worked numbers and numerical checks; its runs keep pgrad's promises."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from cli_runner import run_cli
from gymnasium.vector import AutoresetMode

import pgrad
from pgrad.algos.sac import SAC, SACConfig
from pgrad.envs import make_vec_env
from pgrad.losses import temperature_loss
from pgrad.policies import SquashedNormal
from pgrad.returns import soft_target


def test_squashed_log_prob_is_the_change_of_variables_and_integrates_to_one():
    mean, log_std = torch.tensor([[0.3]], dtype=torch.float64), torch.tensor([[-0.2]])
    loc, scale = torch.tensor([0.5]), torch.tensor([2.0])  # actions in [-1.5, 2.5]
    dist = SquashedNormal(mean, log_std.double(), loc.double(), scale.double())
    # Numerical density: P(a in [a_i, a_i + h]) from the Gaussian CDF of u = atanh((a-loc)/scale).
    edges = torch.linspace(-1.5 + 1e-6, 2.5 - 1e-6, 20001, dtype=torch.float64)
    u = torch.atanh((edges - 0.5) / 2.0)
    cdf = torch.distributions.Normal(0.3, math.exp(-0.2)).cdf(u)
    numeric = (cdf[1:] - cdf[:-1]) / (edges[1:] - edges[:-1])
    centres = (edges[1:] + edges[:-1]) / 2
    analytic = dist.log_prob(centres[:, None]).exp()
    mid = slice(1000, -1000)  # away from the bounds, where the density is flat enough
    torch.testing.assert_close(analytic[mid], numeric[mid], rtol=1e-4, atol=1e-6)
    assert abs(float((analytic * (edges[1:] - edges[:-1])).sum()) - 1.0) < 1e-3
    # rsample's exact log-prob agrees with log_prob of the sample (the atanh round trip).
    a, lp = SquashedNormal(mean.expand(1000, 1), log_std.double().expand(1000, 1),
                           loc.double(), scale.double()).rsample_with_log_prob()  # fmt: skip
    torch.testing.assert_close(lp, dist.log_prob(a), rtol=1e-6, atol=1e-6)


def test_soft_bellman_target_against_hand_worked_numbers():
    rewards = torch.tensor([1.0, 2.0, 0.5])
    terminated = torch.tensor([0.0, 1.0, 0.0])  # the third step was truncated: still bootstraps
    next_q1, next_q2 = torch.tensor([10.0, 5.0, 3.0]), torch.tensor([9.0, 6.0, 4.0])
    next_log_prob = torch.tensor([-1.0, -2.0, 0.5])
    y = soft_target(rewards, terminated, next_q1, next_q2, next_log_prob, alpha=0.2, gamma=0.9)
    # 1 + 0.9 (min(10, 9) - 0.2 * -1) = 9.28;  terminated: 2;  0.5 + 0.9 (3 - 0.2 * 0.5) = 3.11
    torch.testing.assert_close(y, torch.tensor([9.28, 2.0, 3.11]))


@pytest.mark.parametrize(("entropy", "direction"), [(3.0, -1), (-3.0, 1)])
def test_alpha_falls_when_entropy_is_above_the_target_and_rises_below(entropy, direction):
    log_alpha = torch.nn.Parameter(torch.tensor(0.0))
    optimizer = torch.optim.SGD([log_alpha], lr=0.1)
    log_prob = torch.full((64,), -entropy)  # entropy estimate = -mean log pi
    temperature_loss(log_alpha, log_prob, target_entropy=-1.0).backward()
    optimizer.step()
    assert math.copysign(1, log_alpha.item()) == direction


class _Box(gym.Env):
    """Observations in R^3, two actions in [low, high]: only the spaces matter here."""

    def __init__(self, low, high):
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
        self.action_space = gym.spaces.Box(np.float32(low), np.float32(high), (2,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(3, np.float32), {}

    def step(self, action):
        return np.zeros(3, np.float32), 0.0, False, False, {}


# The bounds +-1, the Pendulum-like +-2 (log scale = log 2 per dimension), and scales 5 and 0.5
# with a shifted centre (sum_i log scale_i = log 2.5).
BOUNDS = [(-1.0, 1.0), (-2.0, 2.0), ([-5.0, 0.0], [5.0, 1.0])]


def _sac_on(low, high) -> SAC:
    """A SAC whose networks are the same whatever the bounds (torch seeded before building)."""
    envs = gym.vector.SyncVectorEnv([lambda: _Box(low, high)])
    torch.manual_seed(0)
    return SAC(SACConfig(steps=1000, hidden_sizes=(16, 16), alpha_init=0.5), envs, seed=0)


def _batch(n: int = 64) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "obs": torch.randn(n, 3, generator=g),
        "actions": torch.rand(n, 2, generator=g) * 2 - 1,  # stored in [-1, 1] units
        "rewards": torch.randn(n, generator=g),
        "next_obs": torch.randn(n, 3, generator=g),
        "terminated": (torch.rand(n, generator=g) < 0.2).float(),
    }


def _unit_log_density(dist, u: torch.Tensor) -> np.ndarray:
    """log p(y), y = tanh(u) in [-1, 1]: sum_i [log N(u_i; mean_i, std_i) - log(1 - tanh(u_i)^2)],
    worked in float64 NumPy from the policy's mean and log std, with no ``scale`` anywhere."""
    mean, log_std = dist.base.mean.detach().double().numpy(), dist.base.log_std.detach().double()
    u, log_std = u.detach().double().numpy(), log_std.numpy()
    log_normal = -0.5 * ((u - mean) / np.exp(log_std)) ** 2 - log_std - 0.5 * math.log(2 * math.pi)
    return (log_normal - np.log(1.0 - np.tanh(u) ** 2)).sum(-1)


def _noise_of_update(sac: SAC, batch: dict[str, torch.Tensor], seed: int):
    """The u ~ N(mean, std) that ``update`` draws after ``torch.manual_seed(seed)``, in its order
    (pi(.|s) for the actor and temperature losses, then pi(.|s') for the soft target)."""
    dist = sac.model.actor.distribution(batch["obs"])
    next_dist = sac.model.actor.distribution(batch["next_obs"])
    torch.manual_seed(seed)
    u, next_u = dist.base.rsample(), next_dist.base.rsample()
    return _unit_log_density(dist, u), u, _unit_log_density(next_dist, next_u), next_u


@pytest.mark.parametrize(("low", "high"), BOUNDS)
def test_the_temperature_gradient_vanishes_at_the_target_entropy_in_unit_units(low, high):
    """H_target is an entropy of the action in [-1, 1]: a policy whose [-1, 1] entropy on the
    batch equals it leaves d(temperature loss)/d(log alpha) = -(E[log pi] + H_target) at 0,
    whatever the bounds (with log pi of the bounded action it would be sum_i log scale_i)."""
    sac, batch = _sac_on(low, high), _batch()
    log_p, *_ = _noise_of_update(sac, batch, seed=1)
    sac.target_entropy = float(-log_p.mean())
    torch.manual_seed(1)
    row = dict(zip(SAC.METRICS, sac.update(batch).tolist(), strict=True))
    assert abs(sac.model.log_alpha.grad.item()) < 1e-5
    assert row["entropy"] == pytest.approx(-log_p.mean(), abs=1e-5)


@pytest.mark.parametrize(("low", "high"), BOUNDS)
def test_soft_target_actor_and_temperature_losses_use_the_unit_log_pi(low, high):
    """The three losses against a float64 recomputation from the same u, with log pi(y|s) of
    y = tanh(u) in [-1, 1] (the critics' units too) and alpha = 0.5, gamma = 0.99."""
    sac, batch = _sac_on(low, high), _batch()
    log_p, u, next_log_p, next_u = _noise_of_update(sac, batch, seed=1)
    alpha, gamma, h_target = 0.5, sac.config.gamma, sac.target_entropy
    with torch.no_grad():
        next_q = torch.minimum(*sac.model.targets(batch["next_obs"], torch.tanh(next_u)))
        q1, q2 = (q.double().numpy() for q in sac.model.critics(batch["obs"], batch["actions"]))
    r, done = batch["rewards"].double().numpy(), batch["terminated"].double().numpy()
    y = r + gamma * (1 - done) * (next_q.double().numpy() - alpha * next_log_p)
    critic_loss = 0.5 * (np.mean((q1 - y) ** 2) + np.mean((q2 - y) ** 2))
    torch.manual_seed(1)
    row = dict(zip(SAC.METRICS, sac.update(batch).tolist(), strict=True))
    assert row["critic_loss"] == pytest.approx(critic_loss, rel=1e-5)
    alpha_loss = -math.log(alpha) * (log_p.mean() + h_target)
    assert row["alpha_loss"] == pytest.approx(alpha_loss, abs=1e-5)
    with torch.no_grad():  # the actor loss sees the critics after their step, as ``update`` does
        q_pi = torch.minimum(*sac.model.critics(batch["obs"], torch.tanh(u))).double().numpy()
    assert row["actor_loss"] == pytest.approx(np.mean(alpha * log_p - q_pi), rel=1e-5, abs=1e-5)


def test_a_sac_update_does_not_depend_on_the_action_bounds():
    """Same networks, batch (stored in [-1, 1] units) and noise: the same losses, alpha and
    parameters after the step for every Box, so a target entropy means the same on each."""
    results = []
    for low, high in BOUNDS:
        sac = _sac_on(low, high)
        torch.manual_seed(1)
        row = sac.update(_batch())
        results.append((row, sac.actor_params.param.detach(), sac.critic_params.param.detach(),
                         sac.model.log_alpha.detach()))  # fmt: skip
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_the_buffer_skips_autoreset_steps_and_keeps_truncations_bootstrappable():
    envs = make_vec_env("Pendulum-v1", 1)  # 200-step time limit: truncated, never terminated
    torch.manual_seed(0)
    sac = SAC(SACConfig(steps=1000, learning_starts=10**6, buffer_size=1000), envs, seed=0)
    for _ in range(250):
        sac.iterate()
    assert sac.buffer.size == 249  # step 201 was the autoreset step: not a transition
    assert sac.buffer.arrays["terminated"][:249].sum() == 0
    end, first = sac.buffer.arrays["next_obs"][199], sac.buffer.arrays["obs"][200]
    assert not np.allclose(end, first)  # s' of the truncated step is its real final obs
    arrays = sac.buffer.arrays
    np.testing.assert_array_equal(arrays["obs"][1:200], arrays["next_obs"][:199])


def test_same_step_autoreset_stores_the_real_final_observation_as_the_successor():
    """Under SAME_STEP the step that ends an episode returns the next episode's first
    observation; SAC's transitions come through the shared ``rollout.Stepper``, whose successor
    is the real last observation (``info["final_obs"]``), as under NEXT_STEP."""
    buffers = {}
    for mode in (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP):
        envs = gym.vector.SyncVectorEnv(
            [lambda: gym.make("Pendulum-v1", max_episode_steps=5)], autoreset_mode=mode
        )
        torch.manual_seed(0)
        sac = SAC(SACConfig(steps=100, learning_starts=10**6, buffer_size=100), envs, seed=0)
        for _ in range(5):  # the first episode, cut by the time limit at its 5th step
            sac.iterate()
        buffers[mode] = {k: v[:5].copy() for k, v in sac.buffer.arrays.items()}
    same, nxt = buffers[AutoresetMode.SAME_STEP], buffers[AutoresetMode.NEXT_STEP]
    for k in nxt:
        np.testing.assert_array_equal(same[k], nxt[k])
    np.testing.assert_array_equal(same["obs"][1:], same["next_obs"][:4])


def _sac(tmp_path, name: str, steps: int, **kw):
    return pgrad.train("sac", "Pendulum-v1", steps=steps, seed=0, run_dir=tmp_path / name,
                       hidden_sizes=[32, 32], learning_starts=200, eval_episodes=1,
                       checkpoint_every=400, **kw)  # fmt: skip


@pytest.mark.parametrize(
    "on",
    ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                          reason="needs a CUDA device"))],
)  # fmt: skip
def test_a_resumed_sac_run_logs_what_an_uninterrupted_one_logs(tmp_path, on):
    """The replay buffer, the three optimizers, log alpha, the targets and the random state
    of the device that draws the actor's samples all come back."""
    reference = _sac(tmp_path, "ref", 800, log_every=100, device=on)
    _sac(tmp_path, "cut", 400, log_every=100, device=on)
    resumed = pgrad.train(resume=tmp_path / "cut", steps=800)
    assert resumed.metrics() and reference.metrics()
    ref_rows, got_rows = reference.metrics(), resumed.metrics()
    assert [r["step"] for r in got_rows] == [r["step"] for r in ref_rows]
    for a, b in zip(ref_rows, got_rows, strict=True):
        for k in a:
            assert a[k] == b[k] or (a[k] != a[k] and b[k] != b[k]), (k, a, b)


@pytest.mark.parametrize(
    "setting", ["entropy_coef=0.2", "value_coef=1.0", "normalize_advantage=true", "shared=true",
                "value_head_gain=1.0"],
)  # fmt: skip
def test_keys_sac_has_no_use_for_are_refused_in_one_line_with_nothing_written(
    monkeypatch, capsys, tmp_path, setting
):
    """SAC inherits these keys from the shared config and uses none of them: a user who sets
    one (entropy_coef for a fixed temperature, say) gets told, instead of a run that ignores it."""
    run_dir = tmp_path / "r"
    code, _, err = run_cli(monkeypatch, capsys, "train", "sac", "--env", "Pendulum-v1",
                           "--set", setting, "--run-dir", str(run_dir))  # fmt: skip
    key = setting.split("=")[0]
    assert code == 2 and f"sac does not use {key}" in err
    assert len(err.strip().splitlines()) == 1 and not run_dir.exists()
    if key == "entropy_coef":
        assert "alpha" in err


def test_sac_refuses_discrete_actions():
    with pytest.raises(pgrad.PgradError, match="continuous"):
        pgrad.train("sac", "CartPole-v1", steps=100)


def test_replay_buffer_wraps_and_restores_into_the_same_or_a_larger_capacity():
    from pgrad.replay import ReplayBuffer

    def filled(capacity: int) -> ReplayBuffer:
        buffer = ReplayBuffer(capacity, (1,), 1)
        for i in range(6):  # the oldest two are overwritten in a buffer of 4
            x = np.array([[float(i)]])
            buffer.add(obs=x, actions=x, rewards=x[:, 0], next_obs=x, terminated=x[:, 0] * 0)
        return buffer

    state = filled(4).state()
    assert state["arrays"]["rewards"].tolist() == [4.0, 5.0, 2.0, 3.0] and state["pos"] == 2
    same = ReplayBuffer(4, (1,), 1)
    same.load_state(state)
    assert same.arrays["rewards"].tolist() == [4.0, 5.0, 2.0, 3.0] and same.pos == 2
    larger = ReplayBuffer(10, (1,), 1)
    larger.load_state(state)
    assert larger.arrays["rewards"][:4].tolist() == [2.0, 3.0, 4.0, 5.0]
    assert (larger.size, larger.pos) == (4, 4)


def test_a_uint8_replay_buffer_keeps_bytes_through_a_checkpoint_and_takes_float_ones():
    """Pixels stay bytes in memory and in the checkpoint; a float32 buffer saved before uint8
    storage existed loads into it exactly (its values are whole numbers 0-255)."""
    from pgrad.replay import ReplayBuffer

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (5, 2, 3), dtype=np.uint8)
    zeros = np.zeros(5)
    rows = {"obs": frames, "actions": zeros[:, None], "rewards": zeros, "next_obs": frames[::-1],
            "terminated": zeros}  # fmt: skip
    buffer = ReplayBuffer(8, (2, 3), 1, obs_dtype=torch.uint8)
    buffer.add(**rows)
    assert buffer.tensors["obs"].dtype == torch.uint8
    on_device = ReplayBuffer(8, (2, 3), 1, obs_dtype=np.uint8)  # NumPy's name, same dtype
    on_device.arrays = None  # the GPU path (one tensor copy per field), taken on the CPU here
    on_device.add(**rows)
    for k, v in buffer.tensors.items():
        assert on_device.tensors[k].dtype == v.dtype and torch.equal(on_device.tensors[k], v), k
    assert buffer.tensors["obs"].element_size() * buffer.tensors["obs"].nelement() == 8 * 6
    state = buffer.state()
    assert state["arrays"]["obs"].dtype == np.uint8
    for source in (state, {**state, "arrays": {k: v.astype(np.float32)
                                               for k, v in state["arrays"].items()}}):  # fmt: skip
        restored = ReplayBuffer(8, (2, 3), 1, obs_dtype=torch.uint8)
        restored.load_state(source)
        np.testing.assert_array_equal(restored.tensors["obs"][:5].numpy(), frames)
        np.testing.assert_array_equal(restored.tensors["next_obs"][:5].numpy(), frames[::-1])
