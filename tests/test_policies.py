"""Policies: distributions against independent computations, std modes, critic wiring, errors."""

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from pgrad.algos.ppo import PPOConfig
from pgrad.config import ConfigError
from pgrad.policies import (
    ActorCritic,
    Categorical,
    CategoricalPolicy,
    DiagonalGaussian,
    GaussianPolicy,
    SquashedNormal,
    UnsupportedSpaceError,
    build_actor_critic,
    make_policy,
)

BOX_OBS = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)


def squashed_cdf(a, mean, std, loc, scale):
    """P(A <= a) for A = loc + scale * tanh(U), U ~ N(mean, std): the CDF of U at atanh(...)."""
    u = math.atanh((a - loc) / scale)
    return 0.5 * (1 + math.erf((u - mean) / (std * math.sqrt(2))))


@pytest.mark.parametrize("a", [-1.9, -0.7, 0.0, 0.4, 1.3, 1.95])
def test_squashed_log_prob_matches_numerical_change_of_variables(a):
    mean, std, loc, scale = 0.3, 0.8, 0.5, 1.5  # actions in (-1, 2)
    a = loc + (a / 2) * scale  # map the grid into the bounds
    dist = SquashedNormal(
        torch.tensor([mean], dtype=torch.float64),
        torch.tensor([math.log(std)], dtype=torch.float64),
        torch.tensor([loc], dtype=torch.float64),
        torch.tensor([scale], dtype=torch.float64),
    )
    h = 1e-6
    density = (
        squashed_cdf(a + h, mean, std, loc, scale) - squashed_cdf(a - h, mean, std, loc, scale)
    ) / (2 * h)
    got = dist.log_prob(torch.tensor([a], dtype=torch.float64)).item()
    assert got == pytest.approx(math.log(density), abs=1e-5)


def test_squashed_log_prob_sums_over_dimensions_and_matches_the_sampling_path():
    torch.manual_seed(0)
    mean, std = torch.tensor([[0.2, -1.0]]), torch.tensor([[0.5, 1.2]]).log()
    loc, scale = torch.tensor([0.0, 1.0]), torch.tensor([2.0, 0.5])
    dist = SquashedNormal(mean, std, loc, scale)
    action, log_prob = dist.rsample_with_log_prob()
    per_dim = [
        SquashedNormal(mean[:, i : i + 1], std[:, i : i + 1], loc[i], scale[i]).log_prob(
            action[:, i : i + 1]
        )
        for i in range(2)
    ]
    assert log_prob.item() == pytest.approx(dist.log_prob(action).item(), abs=1e-4)
    assert log_prob.item() == pytest.approx(sum(p.item() for p in per_dim), abs=1e-4)
    assert ((action >= loc - scale) & (action <= loc + scale)).all()


def test_squashed_log_prob_is_finite_at_the_bounds():
    dist = SquashedNormal(torch.zeros(1, 1), torch.zeros(1, 1), torch.zeros(1), torch.ones(1))
    assert torch.isfinite(dist.log_prob(torch.tensor([[1.0]]))).all()
    assert torch.isfinite(dist.log_prob(torch.tensor([[-1.0]]))).all()


def test_reparameterised_sample_carries_gradients_to_the_mean():
    mean = torch.zeros(4, 1, requires_grad=True)
    dist = SquashedNormal(mean, torch.zeros(4, 1), torch.zeros(1), torch.ones(1))
    dist.rsample().sum().backward()
    assert mean.grad is not None and (mean.grad > 0).all()  # d tanh(u)/du > 0


def squashed_entropy_by_quadrature(mean: float, std: float, scale: float) -> float:
    """H(a) for a = loc + scale tanh(u), u ~ N(mean, std^2), by the change of variables:
    H(u) + log scale + E[log(1 - tanh(u)^2)], E by the trapezoid rule over mean +- 12 std."""
    u = np.linspace(mean - 12 * std, mean + 12 * std, 200_001)
    density = np.exp(-0.5 * ((u - mean) / std) ** 2) / (std * math.sqrt(2 * math.pi))
    log_jacobian = -2 * (np.abs(u) + np.log1p(np.exp(-2 * np.abs(u))) - math.log(2))  # -2 log cosh
    gaussian = 0.5 * math.log(2 * math.pi * math.e * std**2)
    return gaussian + math.log(scale) + float(np.trapezoid(density * log_jacobian, u))


@pytest.mark.parametrize(("mean", "std", "scale"), [(0.0, 1.0, 1.0), (0.7, 0.4, 2.5)])
def test_squashed_entropy_estimate_averages_to_the_entropy_and_its_gradient(mean, std, scale):
    """``entropy()`` is the one-sample estimate -log pi(a), a reparameterised: over many
    samples its mean is H and its gradient's mean is dH/d(mean), dH/d(log std) (the entropy
    bonus of squashed PPO/A2C), both against quadrature and central differences of it."""
    n = 400_000
    mu = torch.full((n, 1), mean, dtype=torch.float64, requires_grad=True)
    log_std = torch.full((n, 1), math.log(std), dtype=torch.float64, requires_grad=True)
    loc = torch.zeros(1, dtype=torch.float64)
    dist = SquashedNormal(mu, log_std, loc, torch.full((1,), scale, dtype=torch.float64))
    torch.manual_seed(0)
    estimate = dist.entropy().mean()
    estimate.backward()
    h = squashed_entropy_by_quadrature(mean, std, scale)
    assert float(estimate.detach()) == pytest.approx(h, abs=0.01)

    def slope(h_at, d: float = 1e-4) -> float:  # dH/dx at 0, by central differences
        return (h_at(d) - h_at(-d)) / (2 * d)

    dh_dmean = slope(lambda e: squashed_entropy_by_quadrature(mean + e, std, scale))
    dh_dlogstd = slope(lambda e: squashed_entropy_by_quadrature(mean, std * math.exp(e), scale))
    assert float(mu.grad.sum()) == pytest.approx(dh_dmean, abs=0.01)
    assert float(log_std.grad.sum()) == pytest.approx(dh_dlogstd, abs=0.01)


def test_categorical_matches_torch_distributions():
    torch.manual_seed(0)
    logits = torch.randn(7, 4, requires_grad=True)
    ours, ref = Categorical(logits), torch.distributions.Categorical(logits=logits)
    actions = ref.sample()
    assert torch.allclose(ours.log_prob(actions), ref.log_prob(actions))
    assert torch.allclose(ours.entropy(), ref.entropy())
    assert torch.equal(ours.mode, ref.probs.argmax(-1))
    grad = torch.autograd.grad(ours.log_prob(actions).sum() + ours.entropy().sum(), logits)[0]
    ref_grad = torch.autograd.grad(ref.log_prob(actions).sum() + ref.entropy().sum(), logits)[0]
    assert torch.allclose(grad, ref_grad, atol=1e-6)
    # Sampling frequencies follow softmax(logits): 3 sigma of a binomial proportion.
    probs = torch.softmax(torch.tensor([0.0, 1.0, -1.0]), 0)
    samples = Categorical(torch.tensor([0.0, 1.0, -1.0]).expand(20000, 3)).sample()
    freq = torch.bincount(samples, minlength=3) / 20000
    assert torch.all((freq - probs).abs() < 3 * (probs * (1 - probs) / 20000).sqrt())


def test_diagonal_gaussian_matches_torch_distributions():
    torch.manual_seed(0)
    mean, log_std = torch.randn(5, 3), torch.randn(5, 3)
    ours = DiagonalGaussian(mean, log_std)
    ref = torch.distributions.Independent(torch.distributions.Normal(mean, log_std.exp()), 1)
    actions = ref.sample()
    assert torch.allclose(ours.log_prob(actions), ref.log_prob(actions), atol=1e-5)
    assert torch.allclose(ours.entropy(), ref.entropy(), atol=1e-5)
    draws = DiagonalGaussian(mean[:1].expand(20000, 3), log_std[:1].expand(20000, 3)).sample()
    assert torch.allclose(draws.mean(0), mean[0], atol=4 * log_std[0].exp().max() / 141)
    assert torch.allclose(draws.std(0), log_std[0].exp(), rtol=0.05)


def test_categorical_policy_is_softmax_and_argmax_when_deterministic():
    policy = CategoricalPolicy(BOX_OBS, 3, hidden_sizes=(), activation="tanh")
    with torch.no_grad():
        policy.logits.weight.zero_()
        policy.logits.bias.copy_(torch.tensor([0.0, 2.0, 1.0]))
    obs = torch.zeros(5, 3)
    probs = policy.distribution(obs).probs[0]
    expected = torch.softmax(torch.tensor([0.0, 2.0, 1.0]), 0)
    assert probs.tolist() == pytest.approx(expected.tolist())
    assert policy.act(obs, deterministic=True).tolist() == [1] * 5


def test_gaussian_parameter_std_is_state_independent():
    space = gym.spaces.Box(-2.0, 2.0, (2,), np.float32)
    policy = GaussianPolicy(BOX_OBS, space, std="parameter", log_std_init=-0.5)
    dist = policy.distribution(torch.randn(6, 3))
    assert torch.allclose(dist.stddev, torch.full((6, 2), math.exp(-0.5)))


def test_gaussian_state_std_is_clamped():
    space = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)
    policy = GaussianPolicy(BOX_OBS, space, std="state")
    obs = torch.randn(4, 3)
    for bias, log_std in [(10.0, 2.0), (-50.0, -20.0)]:
        with torch.no_grad():
            policy.log_std_head.weight.zero_()
            policy.log_std_head.bias.fill_(bias)
        std = policy.distribution(obs).stddev
        assert torch.allclose(std, torch.full((4, 1), math.exp(log_std)))


@pytest.mark.parametrize("ortho_init", [True, False])
def test_gaussian_state_std_starts_at_log_std_init(ortho_init):
    """log sigma(s) = w z(s) + b with b = log_std_init; orthogonal rows of gain 0.01 and tanh
    features (|z_i| <= 1, 64 of them) keep |w z| <= 0.01 * 8, so sigma starts within that of
    exp(log_std_init). PyTorch's default weights (SAC's ortho_init=False) only set b."""
    space = gym.spaces.Box(-2.0, 2.0, (2,), np.float32)
    torch.manual_seed(0)
    policy = GaussianPolicy(BOX_OBS, space, std="state", log_std_init=-1.5, ortho_init=ortho_init)
    assert policy.log_std_head.bias.tolist() == [-1.5, -1.5]
    if ortho_init:
        log_std = policy.distribution(torch.randn(100, 3) * 3).stddev.log()
        assert (log_std + 1.5).abs().max() <= 0.08


def test_unsquashed_log_prob_is_not_clipped_to_the_bounds():
    space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    policy = GaussianPolicy(BOX_OBS, space)
    obs = torch.zeros(1, 3)
    dist = policy.distribution(obs)
    outside = torch.tensor([[3.0]])
    normal = torch.distributions.Normal(dist.mean, dist.stddev)
    assert dist.log_prob(outside).item() == pytest.approx(normal.log_prob(outside).sum().item())
    assert dist.log_prob(outside).item() < dist.log_prob(torch.tensor([[1.0]])).item()


def test_squashed_gaussian_policy_maps_into_the_bounds_and_acts_on_its_mean():
    space = gym.spaces.Box(np.array([-2.0, 0.0]), np.array([2.0, 1.0]), dtype=np.float32)
    policy = GaussianPolicy(BOX_OBS, space, squash="tanh", std="state")
    obs = torch.randn(200, 3)
    actions = policy.act(obs)
    assert (actions >= torch.tensor([-2.0, 0.0])).all() and (
        actions <= torch.tensor([2.0, 1.0])
    ).all()
    dist = policy.distribution(obs)
    assert torch.allclose(policy.act(obs, deterministic=True), dist.mode)


def test_actor_critic_value_starts_at_zero_and_shares_the_body_only_when_asked():
    space = gym.spaces.Discrete(2)
    obs = torch.randn(8, 3)
    for shared in (False, True):
        model = ActorCritic(CategoricalPolicy(BOX_OBS, 2), BOX_OBS, shared=shared)
        assert torch.equal(model.value(obs), torch.zeros(8))
        with torch.no_grad():
            model.value_head.weight.fill_(0.1)
        model.value(obs).sum().backward()
        body_grad = model.actor.body[0].weight.grad
        assert (body_grad is not None and body_grad.abs().sum() > 0) == shared
        dist, value = model(obs)
        assert torch.allclose(value, model.value(obs))
        assert torch.allclose(dist.probs, model.distribution(obs).probs)
    assert space.n == 2


@pytest.mark.parametrize("gain", [1.0, 2.5])
def test_value_head_gain_gives_an_orthogonal_row_of_that_norm(gain):
    # A 1 x n orthogonal matrix is a unit row, so the gain is the weights' norm; the bias stays 0.
    config = PPOConfig(value_head_gain=gain)
    model = build_actor_critic(config, BOX_OBS, gym.spaces.Discrete(2))
    w, b = model.value_head.weight.detach(), model.value_head.bias.detach()
    assert w.shape == (1, 64) and math.isclose(w.norm().item(), gain, rel_tol=1e-5)
    assert torch.equal(b, torch.zeros(1))
    obs = torch.randn(5, 3)
    h = model.critic_body(obs).detach()
    expected = [sum(float(h[i, j]) * float(w[0, j]) for j in range(64)) for i in range(5)]
    assert torch.allclose(model.value(obs), torch.tensor(expected), atol=1e-5)
    default = build_actor_critic(PPOConfig(), BOX_OBS, gym.spaces.Discrete(2))
    assert torch.equal(default.value(obs), torch.zeros(5))


def test_a_negative_value_head_gain_is_refused():
    with pytest.raises(ConfigError, match="value_head_gain must be >= 0, got -1"):
        PPOConfig(value_head_gain=-1.0).check()


def test_make_policy_picks_the_family_from_the_action_space():
    assert isinstance(make_policy(BOX_OBS, gym.spaces.Discrete(4)), CategoricalPolicy)
    assert isinstance(make_policy(BOX_OBS, gym.spaces.Box(-1, 1, (2,))), GaussianPolicy)
    multi = make_policy(BOX_OBS, gym.spaces.MultiDiscrete([2, 3]))
    dist = multi.distribution(torch.zeros(1, 3))
    a = torch.tensor([[1, 2]])
    parts = dist.parts
    assert dist.log_prob(a).item() == pytest.approx(
        (parts[0].log_prob(a[:, 0]) + parts[1].log_prob(a[:, 1])).item()
    )
    # Discrete observations are one-hot encoded.
    tabular = make_policy(gym.spaces.Discrete(5), gym.spaces.Discrete(2), hidden_sizes=())
    assert tabular.distribution(torch.tensor([0, 4])).probs.shape == (2, 2)


@pytest.mark.parametrize(
    ("obs_space", "action_space", "message"),
    [
        (BOX_OBS, gym.spaces.Dict({"a": gym.spaces.Discrete(2)}), "unsupported action space"),
        (BOX_OBS, gym.spaces.Discrete(3, start=1), "start=0"),
        (gym.spaces.Text(5), gym.spaces.Discrete(2), "unsupported observation space"),
    ],
)
def test_unsupported_spaces_are_named(obs_space, action_space, message):
    with pytest.raises(UnsupportedSpaceError, match=message):
        make_policy(obs_space, action_space)


def test_categorical_with_masked_actions_is_finite():
    """A logit of -inf (a masked action) has probability 0: entropy over the allowed actions
    only, finite log-probs and gradients for them."""
    logits = torch.tensor([[0.0, -math.inf, math.log(3.0)], [-math.inf, 1.0, 1.0]],
                          requires_grad=True)  # fmt: skip
    dist = Categorical(logits)
    p = torch.tensor([[0.25, 0.0, 0.75], [0.0, 0.5, 0.5]], dtype=torch.float64)
    by_hand = -(p * torch.where(p > 0, p.log(), 0.0)).sum(-1)  # 0 log 0 = 0
    entropy = dist.entropy()
    torch.testing.assert_close(entropy.double(), by_hand, rtol=1e-6, atol=1e-6)
    log_prob = dist.log_prob(torch.tensor([2, 1]))
    torch.testing.assert_close(log_prob.double(), torch.tensor([0.75, 0.5]).double().log())
    (entropy.sum() + log_prob.sum()).backward()
    assert torch.isfinite(logits.grad).all()
    assert logits.grad[0, 1] == 0 and logits.grad[1, 0] == 0
