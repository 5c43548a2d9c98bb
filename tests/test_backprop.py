"""The hand-written actor-critic gradient (backprop.py) against autograd on the same model."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from pgrad.algos.a2c import A2C, A2CConfig
from pgrad.algos.common import FlatParameters, actor_critic_loss, build_actor_critic
from pgrad.algos.ppo import PPO, PPOConfig
from pgrad.backprop import ActorCriticBackprop, Coefficients
from pgrad.envs import make_vec_env

BOX_OBS = gym.spaces.Box(-1.0, 1.0, (3, 2))
SPACES = {
    "softmax": (BOX_OBS, gym.spaces.Discrete(4)),
    "softmax, discrete obs": (gym.spaces.Discrete(5), gym.spaces.Discrete(3)),
    "gaussian": (BOX_OBS, gym.spaces.Box(-2.0, 2.0, (2,))),
}
COEFS = {
    "a2c": Coefficients(value_coef=0.5, entropy_coef=0.01),
    "ppo": Coefficients(value_coef=0.5, entropy_coef=0.02, clip_range=0.2),
    "ppo, clipped value": Coefficients(
        value_coef=0.7, entropy_coef=0.0, clip_range=0.1, clip_range_vf=0.2
    ),
}


@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("hidden", [(16, 8), (8,)])
@pytest.mark.parametrize("space", list(SPACES))
@pytest.mark.parametrize("loss", list(COEFS))
def test_gradient_and_loss_match_autograd(activation, hidden, space, loss):
    torch.manual_seed(0)
    obs_space, action_space = SPACES[space]
    obs_space.seed(0)
    action_space.seed(1)
    config = A2CConfig(hidden_sizes=hidden, activation=activation, log_std_init=-0.3)
    model = build_actor_critic(config, obs_space, action_space)
    with torch.no_grad():  # a critic, a policy and a std that are not at their initial values
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    flat = FlatParameters(model)
    backprop = ActorCriticBackprop.of(model, flat.params, flat.grads)
    assert backprop is not None

    n = 200
    obs = torch.as_tensor(np.stack([obs_space.sample() for _ in range(n)]))
    actions = torch.as_tensor(np.stack([action_space.sample() for _ in range(n)]))
    adv, targets = torch.randn(n), torch.randn(n)
    with torch.no_grad():
        dist, values = model(obs)
        # old policy and critic near the current ones: ratios and value changes on both
        # sides of the clip ranges
        old_log_probs = dist.log_prob(actions) + 0.3 * torch.randn(n)
        old_values = values + 0.4 * torch.randn(n)
    coefs = COEFS[loss]

    total, parts, log_probs = backprop(obs, actions, adv, targets, coefs, old_log_probs, old_values)
    manual = flat.param.grad.clone()

    flat.zero_grad()
    expected, _, expected_log_probs = actor_critic_loss(  # autograd through losses.py
        model, obs, actions, adv, targets, coefs, old_log_probs, old_values
    )
    expected.backward()
    if coefs.clip_range is not None:
        ratio = (log_probs - old_log_probs).exp()
        assert ((ratio - 1).abs() > coefs.clip_range).float().mean() > 0.2  # clipping exercised
    assert torch.allclose(total, expected, atol=1e-5, rtol=1e-5)
    assert torch.allclose(log_probs, expected_log_probs, atol=1e-5)
    assert set(parts) == {"policy_loss", "value_loss", "entropy"}
    assert manual.abs().sum() > 0
    scale = flat.param.grad.abs().max()
    assert torch.allclose(manual, flat.param.grad, atol=2e-6 * scale, rtol=1e-4)


@pytest.mark.parametrize(
    "settings, spaces",
    [
        ({"shared": True}, SPACES["softmax"]),
        ({"std": "state"}, SPACES["gaussian"]),
        ({"squash": "tanh"}, SPACES["gaussian"]),
        ({"activation": "gelu"}, SPACES["softmax"]),
        ({}, (BOX_OBS, gym.spaces.MultiDiscrete([2, 3]))),
    ],
)
def test_models_it_cannot_differentiate_fall_back_to_autograd(settings, spaces):
    model = build_actor_critic(A2CConfig(**settings), *spaces)
    flat = FlatParameters(model)
    assert ActorCriticBackprop.of(model, flat.params, flat.grads) is None


@pytest.mark.parametrize(
    "algo, config",
    [
        (PPO, PPOConfig(n_envs=4, n_steps=32, batch_size=64, n_epochs=3, clip_range_vf=0.2)),
        (A2C, A2CConfig(n_envs=4, n_steps=8)),
    ],
)
def test_training_with_either_gradient_takes_the_same_steps(algo, config):
    models = []
    for analytic in (True, False):
        torch.manual_seed(0)
        config.analytic_gradients = analytic
        agent = algo(config, make_vec_env("CartPole-v1", 4), seed=0)
        assert (agent.backprop is not None) == analytic
        for _ in range(3):
            agent.iterate()
        models.append(torch.cat([p.detach().flatten() for p in agent.model.parameters()]))
        agent.close()
    assert not torch.equal(models[0], torch.zeros_like(models[0]))
    assert torch.allclose(models[0], models[1], atol=1e-5)
