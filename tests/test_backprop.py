"""The fast path's hand-written actor-critic gradient (``fast/backprop.py``) against autograd
through each algorithm's own torch loss (``a2c.a2c_loss``, ``ppo.ppo_loss``), on the same model;
and models it cannot run fall back to torch with no change in results."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from pgrad import fast
from pgrad.algos.a2c import A2C, A2CConfig, a2c_loss
from pgrad.algos.ppo import PPO, PPOConfig, ppo_loss
from pgrad.envs import make_vec_env
from pgrad.fast import ActorCriticTerms, FlatParameters
from pgrad.policies import build_actor_critic

BOX_OBS = gym.spaces.Box(-1.0, 1.0, (3, 2))
SPACES = {
    "softmax": (BOX_OBS, gym.spaces.Discrete(4)),
    "softmax, discrete obs": (gym.spaces.Discrete(5), gym.spaces.Discrete(3)),
    "gaussian": (BOX_OBS, gym.spaces.Box(-2.0, 2.0, (2,))),
}
LOSSES = {  # the fast twin's terms, the algorithm's torch loss, its config
    "a2c": (ActorCriticTerms("vanilla", 0.5, 0.01), a2c_loss, A2CConfig()),
    "ppo": (ActorCriticTerms("clipped", 0.5, 0.02, 0.2), ppo_loss, PPOConfig(entropy_coef=0.02)),
    "ppo, clipped value": (
        ActorCriticTerms("clipped", 0.7, 0.0, 0.1, 0.2),
        ppo_loss,
        PPOConfig(value_coef=0.7, clip_range=0.1, clip_range_vf=0.2),
    ),
}


@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("hidden", [(16, 8), (8,)])
@pytest.mark.parametrize("space", list(SPACES))
@pytest.mark.parametrize("loss", list(LOSSES))
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
    terms, torch_loss, loss_config = LOSSES[loss]
    backprop = fast.loss_gradient(model, flat, terms)
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
    minibatch = (obs, actions, adv, targets)
    if terms.surrogate == "clipped":
        minibatch += (old_log_probs, old_values)

    total, parts, log_probs = backprop(*minibatch)
    manual = flat.param.grad.clone()

    flat.zero_grad()
    expected, expected_parts, expected_log_probs = torch_loss(model, loss_config, *minibatch)
    expected.backward()
    if terms.clip_range is not None:
        ratio = (log_probs - old_log_probs).exp()
        assert ((ratio - 1).abs() > terms.clip_range).float().mean() > 0.2  # clipping exercised
    for k, v in expected_parts.items():
        assert torch.allclose(parts[k], v, atol=1e-5, rtol=1e-5), k
    assert torch.allclose(total, expected, atol=1e-5, rtol=1e-5)
    assert torch.allclose(log_probs, expected_log_probs, atol=1e-5)
    assert set(parts) == {"policy_loss", "value_loss", "entropy"}
    assert manual.abs().sum() > 0
    scale = flat.param.grad.abs().max()
    assert torch.allclose(manual, flat.param.grad, atol=1e-6 * scale, rtol=1e-5)


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
    assert fast.unsupported(model, "gradient") is not None
    assert fast.loss_gradient(model, flat, LOSSES["a2c"][0]) is None


@pytest.mark.parametrize("algo", [A2C, PPO])
def test_a_model_the_fast_path_cannot_run_trains_exactly_as_with_it_off(algo):
    """GELU: neither acting nor the gradient can run in NumPy, so with ``fast`` on everything
    falls back to torch except the optimizer's fast step, which is bit for bit torch's."""
    config_cls = A2CConfig if algo is A2C else PPOConfig
    runs = []
    for enabled in (True, False):
        torch.manual_seed(0)
        config = config_cls(n_envs=4, n_steps=16, activation="gelu", fast=enabled)
        if algo is PPO:
            config.batch_size, config.n_epochs = 32, 2
        agent = algo(config, make_vec_env("CartPole-v1", 4), seed=0)
        assert fast.unsupported(agent.model, "acting") == "module GELU"
        rows = [agent.iterate() for _ in range(3)]
        runs.append((rows, agent.flat.param.detach().clone()))
        agent.close()
    assert runs[0][0] == runs[1][0]
    assert torch.equal(runs[0][1], runs[1][1])


@pytest.mark.parametrize(
    "algo, config",
    [
        (PPO, PPOConfig(n_envs=4, n_steps=32, batch_size=64, n_epochs=3, clip_range_vf=0.2)),
        (A2C, A2CConfig(n_envs=4, n_steps=8)),
    ],
)
def test_training_with_either_gradient_takes_the_same_steps(algo, config):
    models = []
    for enabled in (True, False):
        torch.manual_seed(0)
        agent = algo(config, make_vec_env("CartPole-v1", 4), seed=0)
        if not enabled:  # the hand-written gradient off, NumPy acting kept: the same samples
            agent.fast_loss = None
        assert (agent.fast_loss is not None) == enabled
        for _ in range(3):
            agent.iterate()
        models.append(torch.cat([p.detach().flatten() for p in agent.model.parameters()]))
        agent.close()
    assert not torch.equal(models[0], torch.zeros_like(models[0]))
    assert torch.allclose(models[0], models[1], atol=1e-5)
