"""REINFORCE estimates against the exact policy gradient of a tiny MDP, by enumeration.

The MDP: from state 0, action 0 pays 1 and leads to state 1; action 1 pays 0 and leads to
state 2. In state 1 the actions pay 0 or 2, in state 2 they pay 1 or 0.5, and the episode ends.
Every reward carries N(0, 1) noise and an offset of +5 (all-positive rewards, as in CartPole,
are where a baseline matters most). gamma = 1, so grad J = E[ sum_t grad log pi(a_t|s_t) G_t ]
holds exactly for the reward-to-go estimator, with or without a baseline b(s_t).

The exact J(theta) is a sum over the four trajectories; its gradient (autograd through that
sum) is the reference. It shares no code with the estimator (rollout, returns, losses).
"""

import gymnasium as gym
import torch

from pgrad.losses import policy_gradient_loss, value_loss
from pgrad.policies import ActorCritic, CategoricalPolicy
from pgrad.returns import discounted_returns

MEAN_REWARD = 5.0 + torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 0.5]])  # [state, action]
NEXT_STATE = torch.tensor([1, 2])  # after state 0, by action
STATES = gym.spaces.Discrete(3)


def make_model() -> ActorCritic:
    torch.manual_seed(1)
    policy = CategoricalPolicy(STATES, 2, hidden_sizes=())
    with torch.no_grad():  # a policy away from uniform, so the gradient is not trivial
        policy.logits.weight.copy_(torch.tensor([[0.5, -0.3, 0.8], [-0.2, 0.4, -0.6]]))
    return ActorCritic(policy, STATES, shared=False, hidden_sizes=())


def table(policy: CategoricalPolicy) -> torch.Tensor:
    """The tabular softmax's parameters theta[a, s] (the logits layer on one-hot states).

    The layer's bias, shared by all states, is left out: a per-state baseline V(s) is not the
    variance-minimising baseline for a parameter shared across time steps."""
    return policy.logits.weight


def exact_gradient(policy: CategoricalPolicy) -> torch.Tensor:
    probs = policy.distribution(torch.arange(3)).probs  # [state, action]
    j = sum(
        probs[0, a0] * (MEAN_REWARD[0, a0] + probs[NEXT_STATE[a0]] @ MEAN_REWARD[NEXT_STATE[a0]])
        for a0 in range(2)
    )
    return torch.autograd.grad(j, table(policy))[0].flatten()


def sample_episodes(policy: CategoricalPolicy, n: int, generator: torch.Generator):
    """n episodes, time-major (2, n): states, actions, noisy rewards; all end at step 1."""
    with torch.no_grad():
        s0 = torch.zeros(n, dtype=torch.long)
        a0 = torch.multinomial(policy.distribution(s0).probs, 1, generator=generator).squeeze(1)
        s1 = NEXT_STATE[a0]
        a1 = torch.multinomial(policy.distribution(s1).probs, 1, generator=generator).squeeze(1)
    states, actions = torch.stack([s0, s1]), torch.stack([a0, a1])
    rewards = MEAN_REWARD[states, actions] + torch.randn(2, n, generator=generator)
    terminated = torch.tensor([[False], [True]]).expand(2, n)
    return states, actions, rewards, terminated


def estimates(model: ActorCritic, n: int, baseline: bool, seed: int) -> torch.Tensor:
    """n single-episode gradient estimates of J, each the gradient of pgrad's loss (x -T)."""
    generator = torch.Generator().manual_seed(seed)
    states, actions, rewards, terminated = sample_episodes(model.actor, n, generator)
    returns = discounted_returns(rewards, terminated, torch.zeros_like(terminated), gamma=1.0)
    with torch.no_grad():
        psi = returns - model.value(states.flatten()).view(2, n) if baseline else returns
    out = []
    for i in range(n):
        log_probs = model.actor.distribution(states[:, i]).log_prob(actions[:, i])
        loss = policy_gradient_loss(log_probs, psi[:, i])  # mean over the episode's 2 steps
        out.append(-2.0 * torch.autograd.grad(loss, table(model.actor))[0].flatten())
    return torch.stack(out)


def fit_critic(model: ActorCritic, seed: int) -> None:
    """Regress V(s) onto sampled returns with pgrad's value loss (on separate episodes)."""
    generator = torch.Generator().manual_seed(seed)
    states, _, rewards, terminated = sample_episodes(model.actor, 4000, generator)
    returns = discounted_returns(rewards, terminated, torch.zeros_like(terminated), gamma=1.0)
    optimizer = torch.optim.Adam(model.value_head.parameters(), lr=0.05)
    for _ in range(300):
        optimizer.zero_grad()
        value_loss(model.value(states.flatten()), returns.flatten()).backward()
        optimizer.step()


def test_reinforce_with_and_without_baseline_is_unbiased_and_the_baseline_cuts_variance():
    model = make_model()
    exact = exact_gradient(model.actor)
    fit_critic(model, seed=7)
    n = 3000
    plain = estimates(model, n, baseline=False, seed=11)
    based = estimates(model, n, baseline=True, seed=11)
    for sample in (plain, based):
        mean, stderr = sample.mean(0), sample.std(0) / n**0.5
        # Every component within 4 standard errors of the exact gradient.
        assert ((mean - exact).abs() <= 4 * stderr + 1e-6).all(), (mean, exact, stderr)
    var_plain = plain.var(0).sum()
    var_based = based.var(0).sum()
    assert var_based < 0.25 * var_plain, (var_based, var_plain)


def test_an_estimator_with_the_wrong_sign_is_caught():
    # The check above can fail: flipping the sign of Psi_t puts the mean far outside the errors.
    model = make_model()
    exact = exact_gradient(model.actor)
    flipped = -estimates(model, 1500, baseline=False, seed=3)
    mean, stderr = flipped.mean(0), flipped.std(0) / 1500**0.5
    assert not ((mean - exact).abs() <= 4 * stderr).all()
