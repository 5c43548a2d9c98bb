"""Each algorithm's whole update, option by option, against a from-scratch reimplementation.

The losses are checked by hand elsewhere (``test_losses``); here the question is whether an
update wires its options in: advantage normalisation (PPO per minibatch), minibatch cuts that do
not divide the batch, epochs, early stopping on ``target_kl``, value clipping, gradient clipping,
the optimizer and its epsilon, learning-rate annealing, masked steps, REINFORCE's baseline and
extra critic steps, SAC's temperature, Polyak averaging and update schedule, and the networks'
initialisation. Each reference below is written the way a textbook (or CleanRL) writes the
algorithm: explicit loops over time for the returns, its own per-parameter torch optimizer, no
pgrad code beyond the model's distributions (tested against ``torch.distributions`` in
``test_policies``). Every case compares the parameters after the update.
"""

from __future__ import annotations

import copy
import math

import gymnasium as gym
import numpy as np
import pytest
import torch

import pgrad
from pgrad.algos import reinforce
from pgrad.algos.a2c import A2C, A2CConfig
from pgrad.algos.ppo import PPO, PPOConfig
from pgrad.algos.reinforce import Reinforce, ReinforceConfig
from pgrad.algos.sac import SAC, SACConfig
from pgrad.envs import make_vec_env
from pgrad.policies import build_actor_critic
from pgrad.rollout import Batch

T, N = 6, 3  # rollout steps x envs
DISCRETE = (gym.spaces.Box(-1.0, 1.0, (4,)), gym.spaces.Discrete(3))
CONTINUOUS = (gym.spaces.Box(-1.0, 1.0, (4,)), gym.spaces.Box(-2.0, 2.0, (2,)))


class Spaces:
    """What an algorithm reads from its vector env when a collector is supplied."""

    def __init__(self, observation_space: gym.Space, action_space: gym.Space):
        self.single_observation_space = observation_space
        self.single_action_space = action_space
        self.unwrapped = self


class NoCollector:
    def close(self) -> None:
        pass


def fake_batch(model, generator: torch.Generator, mask: torch.Tensor | None = None) -> Batch:
    """A (T, N) rollout with actions drawn from ``model``, log-probs and values off by noise
    (so ratios start away from 1 and some are clipped), episodes that end by termination and by
    truncation inside it, and optionally steps masked out."""
    obs = torch.randn(T, N, 4, generator=generator)
    with torch.no_grad():
        dist, values = model(obs.reshape(T * N, 4))
        actions = dist.sample()
        log_probs = dist.log_prob(actions).reshape(T, N)
    actions = actions.reshape(T, N, *actions.shape[1:])
    values = torch.zeros(T, N) if values is None else values.reshape(T, N)  # no critic: 0
    noise = lambda scale: scale * torch.randn(T, N, generator=generator)  # noqa: E731
    terminated = torch.zeros(T, N, dtype=torch.bool)
    truncated = torch.zeros(T, N, dtype=torch.bool)
    terminated[2, 0] = truncated[3, 1] = terminated[T - 1, 2] = True
    return Batch(
        obs=obs,
        actions=actions,
        log_probs=log_probs + noise(0.2),
        rewards=torch.randn(T, N, generator=generator),
        terminated=terminated,
        truncated=truncated,
        values=values + noise(0.5),
        next_values=torch.randn(T, N, generator=generator),
        mask=torch.ones(T, N, dtype=torch.bool) if mask is None else mask,
    )


def reference_gae(batch: Batch, gamma: float, lam: float) -> torch.Tensor:
    """A_t = delta_t + gamma lambda A_{t+1}, restarted where an episode ends;
    delta_t = r_t + gamma (1 - terminated_t) V(s_{t+1}) - V(s_t)."""
    advantages = torch.zeros(T, N)
    for i in range(N):
        future = 0.0
        for t in reversed(range(T)):
            not_done = 0.0 if batch.terminated[t, i] else 1.0
            delta = batch.rewards[t, i] + gamma * not_done * batch.next_values[t, i]
            delta = delta - batch.values[t, i]
            ended = bool(batch.terminated[t, i] or batch.truncated[t, i])
            future = delta + (0.0 if ended else gamma * lam * future)
            advantages[t, i] = future
    return advantages


def unmasked(batch: Batch, *per_step: torch.Tensor) -> list[torch.Tensor]:
    """The observations, the actions and each (T, N) tensor of ``per_step`` at the steps
    ``batch.mask`` keeps, in (t, i) order."""
    keep = batch.mask.reshape(-1)
    obs, actions = batch.obs.reshape(T * N, -1)[keep], batch.actions.reshape(T * N, -1)[keep]
    actions = actions.squeeze(-1) if batch.actions.dim() == 2 else actions
    return [obs, actions, *(x.reshape(-1)[keep] for x in per_step)]


def standardized(x: torch.Tensor) -> torch.Tensor:
    mean = x.mean()
    std = math.sqrt(((x - mean) ** 2).mean())  # population standard deviation
    return (x - mean) / (std + 1e-8)


def reference_step(params, optimizer, loss: torch.Tensor, max_grad_norm: float | None) -> None:
    """One step of ``optimizer`` on ``loss``, the gradient of ``params`` (a module's or a list)
    scaled down to global norm ``max_grad_norm`` if it is longer."""
    optimizer.zero_grad()
    loss.backward()
    if max_grad_norm is not None:
        params = params.parameters() if isinstance(params, torch.nn.Module) else params
        grads = [p.grad for p in params if p.grad is not None]
        norm = math.sqrt(sum(float((g**2).sum()) for g in grads))
        for g in grads:
            g.mul_(min(1.0, max_grad_norm / (norm + 1e-6)))
    optimizer.step()


def flat(model) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def reference_ppo(model, batch: Batch, cfg: PPOConfig, steps_done: int, seed: int) -> int:
    """CleanRL's update loop; returns the number of optimizer steps taken."""
    lr = cfg.learning_rate * (1 - steps_done / cfg.steps if cfg.anneal_lr else 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, eps=cfg.adam_eps, foreach=False)
    advantages = reference_gae(batch, cfg.gamma, cfg.gae_lambda)
    returns = advantages + batch.values
    obs, actions, old_log_probs, old_values, advantages, returns = unmasked(
        batch, batch.log_probs, batch.values, advantages, returns
    )
    n, taken = len(obs), 0
    torch.manual_seed(seed)
    for _ in range(cfg.n_epochs):
        order = torch.randperm(n) if cfg.batch_size < n else torch.arange(n)
        for start in range(0, n, cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            adv = advantages[idx]
            if cfg.normalize_advantage and len(idx) > 1:  # SB3's rule: one sample stays as it is
                adv = standardized(adv)
            dist, values = model(obs[idx])
            log_ratio = dist.log_prob(actions[idx]) - old_log_probs[idx]
            ratio = log_ratio.exp()
            if cfg.target_kl is not None:
                kl = ((ratio - 1) - log_ratio).mean()
                if kl > 1.5 * cfg.target_kl:
                    return taken
            c = cfg.clip_range
            policy_loss = -torch.min(ratio * adv, ratio.clamp(1 - c, 1 + c) * adv).mean()
            value_error = (values - returns[idx]) ** 2
            if cfg.clip_range_vf is not None:
                v = cfg.clip_range_vf
                clipped = old_values[idx] + (values - old_values[idx]).clamp(-v, v)
                value_error = torch.max(value_error, (clipped - returns[idx]) ** 2)
            loss = (
                policy_loss
                + cfg.value_coef * value_error.mean()
                - cfg.entropy_coef * dist.entropy().mean()
            )
            reference_step(model, optimizer, loss, cfg.max_grad_norm)
            taken += 1
    return taken


def updated(algo_cls, config, spaces, batch_mask=None, steps_done: int = 0, seed: int = 7):
    """(the algorithm after one update on a fake batch, its starting model, the batch)."""
    torch.manual_seed(0)
    algo = algo_cls(config, Spaces(*spaces), collector=NoCollector())
    start = copy.deepcopy(algo.model)
    batch = fake_batch(algo.model, torch.Generator().manual_seed(1), batch_mask)
    algo.steps = steps_done
    torch.manual_seed(seed)
    metrics = algo.update(batch)
    return algo, start, batch, metrics


PPO_OPTIONS = {
    "defaults": {},
    "uneven minibatches": {"batch_size": 5},  # 16 samples: 5, 5, 5 and one
    "one-sample minibatches": {"batch_size": 1},
    "one minibatch": {"batch_size": 64},
    "no advantage normalisation": {"normalize_advantage": False},
    "value clipping": {"clip_range_vf": 0.1, "value_coef": 0.7},
    "no gradient clipping": {"max_grad_norm": None},
    "tight gradient clipping": {"max_grad_norm": 0.05},
    "large adam eps": {"adam_eps": 0.1},
    "annealed lr": {"anneal_lr": True, "steps": 1000},
    "entropy bonus": {"entropy_coef": 0.05, "clip_range": 0.1},
    "target kl": {"target_kl": 0.05},
    "shared body": {"shared": True, "value_coef": 0.7},
    "squashed, state-dependent std": {"std": "state", "squash": "tanh"},
    "gsde": {"std": "gsde", "log_std_init": -1.0},
}


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "torch"])
@pytest.mark.parametrize("space", ["discrete", "continuous"])
@pytest.mark.parametrize("option", list(PPO_OPTIONS))
def test_ppo_update_equals_a_from_scratch_ppo(option, space, fast):
    spaces = DISCRETE if space == "discrete" else CONTINUOUS
    settings = {"n_envs": N, "n_steps": T, "batch_size": 8, "n_epochs": 3, "gae_lambda": 0.9,
                "learning_rate": 0.01, "fast": fast, **PPO_OPTIONS[option]}  # fmt: skip
    config = PPOConfig(**settings)
    mask = torch.ones(T, N, dtype=torch.bool)
    mask[0, 1] = mask[4, 2] = False  # steps not trained on (ignored autoreset steps)
    algo, start, batch, metrics = updated(PPO, config, spaces, mask, steps_done=250)

    before = flat(start)
    taken = reference_ppo(start, batch, config, steps_done=250, seed=7)
    valid = int(mask.sum())
    expected_steps = config.n_epochs * math.ceil(valid / min(config.batch_size, valid))
    if config.target_kl is None:
        assert taken == expected_steps
    else:  # the option must bite: stopped after some, not all, minibatch steps
        assert 0 < taken < expected_steps
    assert metrics["epochs_stopped_early"] == float(taken < expected_steps)
    assert (before - flat(algo.model)).abs().max() > 1e-3  # it did something worth comparing
    assert (flat(start) - flat(algo.model)).abs().max() < 2e-5, option


@pytest.mark.parametrize("algo", ["ppo", "a2c"])
def test_learning_rate_anneals_linearly_to_zero(algo):
    """lr = 0.01 (1 - done / 1000): the rate the update used, logged and in the optimizer."""
    common = {"n_envs": N, "n_steps": T, "anneal_lr": True, "steps": 1000, "learning_rate": 0.01}
    if algo == "ppo":
        algo_cls, config = PPO, PPOConfig(batch_size=8, n_epochs=1, **common)
    else:
        algo_cls, config = A2C, A2CConfig(**common)
    for done, lr in [(0, 0.01), (250, 0.0075), (1000, 0.0)]:
        trained, *_, metrics = updated(algo_cls, config, DISCRETE, steps_done=done)
        assert metrics["learning_rate"] == pytest.approx(lr)
        assert all(g["lr"] == pytest.approx(lr) for g in trained.optimizer.param_groups)


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "torch"])
@pytest.mark.parametrize("algo", ["ppo", "a2c"])
def test_a_rollout_of_only_ignored_autoreset_steps_changes_nothing(algo, fast):
    """With n_steps = 1, the rollout after an episode ends holds only the ignored autoreset
    step: the update must leave the parameters and the step count as they were, log NaN losses,
    and not crash (PPO used to divide by its empty batch)."""
    common = {"n_envs": N, "n_steps": T, "learning_rate": 0.01, "fast": fast}
    if algo == "ppo":
        algo_cls, config = PPO, PPOConfig(batch_size=8, n_epochs=2, **common)
    else:
        algo_cls, config = A2C, A2CConfig(**common)
    nothing = torch.zeros(T, N, dtype=torch.bool)
    trained, start, _, metrics = updated(algo_cls, config, CONTINUOUS, nothing, steps_done=250)
    assert torch.equal(flat(start), flat(trained.model))
    assert trained.steps == 250
    assert metrics["steps"] == 0
    assert all(math.isnan(metrics[k]) for k in ("policy_loss", "value_loss", "grad_norm"))


def test_ppo_trains_with_one_env_and_one_step_rollouts(tmp_path):
    """The user-facing case of the test above: CartPole's random episodes end every ~20 steps,
    so 300 steps of 1-step rollouts pass several empty ones."""
    run = pgrad.train(
        "ppo", "CartPole-v1", steps=300, seed=0, n_envs=1, n_steps=1, batch_size=1, n_epochs=1,
        eval_episodes=1, log_every=1, run_dir=tmp_path / "r",
    )  # fmt: skip
    assert run.summary["steps"] >= 300
    assert sum(r["episode_return"] == r["episode_return"] for r in run.metrics()) >= 3


def reference_a2c(model, batch: Batch, cfg: A2CConfig) -> None:
    """One step on the whole rollout: n-step returns (or GAE) by explicit loops."""
    if cfg.advantage == "gae":
        advantages = reference_gae(batch, cfg.gamma, cfg.gae_lambda)
        returns = advantages + batch.values
    else:
        returns = torch.zeros(T, N)
        for i in range(N):
            future = batch.next_values[T - 1, i]
            for t in reversed(range(T)):
                if batch.terminated[t, i]:
                    future = torch.tensor(0.0)
                elif batch.truncated[t, i]:
                    future = batch.next_values[t, i]
                future = batch.rewards[t, i] + cfg.gamma * future
                returns[t, i] = future
        advantages = returns - batch.values
    obs, actions, advantages, returns = unmasked(batch, advantages, returns)
    if cfg.normalize_advantage:
        advantages = standardized(advantages)
    if cfg.optimizer == "rmsprop":
        optimizer = torch.optim.RMSprop(
            model.parameters(), lr=cfg.learning_rate, alpha=0.99, eps=cfg.adam_eps, foreach=False
        )
    else:
        optimizer = torch.optim.Adam(
            model.parameters(), lr=cfg.learning_rate, eps=cfg.adam_eps, foreach=False
        )
    dist, values = model(obs)
    loss = (
        -(dist.log_prob(actions) * advantages).mean()
        + cfg.value_coef * ((values - returns) ** 2).mean()
        - cfg.entropy_coef * dist.entropy().mean()
    )
    reference_step(model, optimizer, loss, cfg.max_grad_norm)


A2C_OPTIONS = {
    "n-step returns, rmsprop": {},
    "gae": {"advantage": "gae", "gae_lambda": 0.8},
    "normalised advantages": {"normalize_advantage": True},
    "adam": {"optimizer": "adam", "adam_eps": 1e-3},
    "no gradient clipping": {"max_grad_norm": None},
    "tight gradient clipping, entropy bonus": {"max_grad_norm": 0.05, "entropy_coef": 0.1},
    "shared body": {"shared": True, "value_coef": 0.7},
}


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "torch"])
@pytest.mark.parametrize("space", ["discrete", "continuous"])
@pytest.mark.parametrize("option", list(A2C_OPTIONS))
def test_a2c_update_equals_a_from_scratch_a2c(option, space, fast):
    spaces = DISCRETE if space == "discrete" else CONTINUOUS
    settings = {"n_envs": N, "n_steps": T, "optimizer": "rmsprop", "learning_rate": 0.01,
                "fast": fast, **A2C_OPTIONS[option]}  # fmt: skip
    config = A2CConfig(**settings)
    mask = torch.ones(T, N, dtype=torch.bool)
    mask[3, 0] = False
    algo, start, batch, _ = updated(A2C, config, spaces, mask)
    before = flat(start)
    reference_a2c(start, batch, config)
    assert (before - flat(algo.model)).abs().max() > 1e-3
    assert (flat(start) - flat(algo.model)).abs().max() < 2e-5, option


def episodes_batch(model, generator: torch.Generator) -> Batch:
    """Whole episodes as ``collect_episodes`` returns them: env 0 terminates at its last step,
    env 1 is truncated after 4 steps and env 2 terminates after 3 (each then padding, masked
    out)."""
    batch = fake_batch(model, generator)
    batch.terminated.zero_(), batch.truncated.zero_()
    batch.terminated[T - 1, 0] = batch.truncated[3, 1] = batch.terminated[2, 2] = True
    batch.mask[4:, 1] = batch.mask[3:, 2] = False
    batch.episode_returns = np.array([1.0, 2.0, 3.0])
    batch.episode_lengths = np.array([T, 4, 3])
    return batch


def reference_reinforce(model, batch: Batch, cfg: ReinforceConfig) -> None:
    """G_t = r_t + gamma G_{t+1} to each episode's end, bootstrapped from V(s_T) at a truncation
    when there is a baseline; one step on -mean[log pi (G_t - b(s_t))] (+ the critic's loss),
    then ``value_epochs - 1`` steps on the critic's loss alone."""
    returns = torch.zeros(T, N)
    for i in range(N):
        last = int(batch.mask[:, i].sum()) - 1
        future = batch.next_values[last, i] if cfg.baseline and batch.truncated[last, i] else 0.0
        for t in reversed(range(last + 1)):
            future = batch.rewards[t, i] + cfg.gamma * future
            returns[t, i] = future
    obs, actions, returns, old_values = unmasked(batch, returns, batch.values)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate, foreach=False)
    dist, values = model(obs)
    psi = returns - old_values if cfg.baseline else returns
    if cfg.normalize_advantage:
        psi = standardized(psi)
    loss = -(dist.log_prob(actions) * psi).mean() - cfg.entropy_coef * dist.entropy().mean()
    if cfg.baseline:
        loss = loss + cfg.value_coef * ((values - returns) ** 2).mean()
    reference_step(model, optimizer, loss, cfg.max_grad_norm)
    for _ in range(cfg.value_epochs - 1):  # the actor has no gradient here, so Adam skips it
        critic_loss = cfg.value_coef * ((model.value(obs) - returns) ** 2).mean()
        reference_step(model, optimizer, critic_loss, cfg.max_grad_norm)


REINFORCE_OPTIONS = {
    "defaults (normalised returns)": {},
    "raw returns": {"normalize_advantage": False},
    "baseline": {"baseline": True, "normalize_advantage": False},
    "baseline, normalised": {"baseline": True},
    "baseline, 3 critic steps": {"baseline": True, "value_epochs": 3, "value_coef": 0.8},
    "clipped, entropy bonus": {"max_grad_norm": 0.05, "entropy_coef": 0.1, "gamma": 0.9},
}


@pytest.mark.parametrize("space", ["discrete", "continuous"])
@pytest.mark.parametrize("option", list(REINFORCE_OPTIONS))
def test_reinforce_update_equals_a_from_scratch_reinforce(monkeypatch, option, space):
    spaces = DISCRETE if space == "discrete" else CONTINUOUS
    config = ReinforceConfig(n_envs=N, learning_rate=0.01, **REINFORCE_OPTIONS[option])
    torch.manual_seed(0)
    algo = Reinforce(config, Spaces(*spaces), seed=0)
    start = copy.deepcopy(algo.model)
    batch = episodes_batch(algo.model, torch.Generator().manual_seed(1))
    if not config.baseline:  # a policy alone records no values
        batch.values.zero_(), batch.next_values.zero_()
    monkeypatch.setattr(reinforce, "collect_episodes", lambda *args, **kwargs: batch)
    algo.iterate()
    before = flat(start)
    reference_reinforce(start, batch, config)
    assert (before - flat(algo.model)).abs().max() > 1e-3
    assert (flat(start) - flat(algo.model)).abs().max() < 2e-5, option


@pytest.mark.parametrize("space", ["discrete", "continuous"])
def test_ortho_init_is_orthogonal_with_sqrt2_hidden_and_001_head_gains_and_off_is_torchs(space):
    spaces = DISCRETE if space == "discrete" else CONTINUOUS
    for ortho in (True, False):
        torch.manual_seed(0)
        model = build_actor_critic(PPOConfig(ortho_init=ortho, hidden_sizes=(16, 8)), *spaces)
        layers = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
        body = [m for m in layers if m.in_features in (4, 16) and m.out_features in (16, 8)]
        assert len(body) == 4  # actor and critic: 4 -> 16 -> 8 each
        action_head = [m for m in layers if m.in_features == 8 and m.out_features in (2, 3)]
        assert len(action_head) == 1
        for layer in body:
            w = layer.weight.detach()
            gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
            assert torch.allclose(gram, 2.0 * torch.eye(len(gram)), atol=1e-5) == ortho
            assert bool((layer.bias == 0).all()) == ortho
            if not ortho:  # PyTorch's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
                assert w.abs().max() <= 1 / math.sqrt(layer.in_features)
        w = action_head[0].weight.detach()
        gram = w @ w.T
        assert torch.allclose(gram, 1e-4 * torch.eye(len(gram)), atol=1e-8) == ortho


def sac_batch(seed: int, n: int = 32) -> dict[str, torch.Tensor]:
    """Replay transitions for Pendulum's spaces, actions stored in [-1, 1] units."""
    g = torch.Generator().manual_seed(seed)
    return {
        "obs": torch.randn(n, 3, generator=g),
        "actions": torch.rand(n, 1, generator=g) * 2 - 1,
        "rewards": torch.randn(n, generator=g),
        "next_obs": torch.randn(n, 3, generator=g),
        "terminated": (torch.rand(n, generator=g) < 0.3).float(),
    }


def squashed(dist, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """y = tanh(u) in [-1, 1] and log pi(y|s) = sum_i [log N(u_i) - log(1 - tanh(u_i)^2)]."""
    normal = torch.distributions.Normal(dist.base.mean, dist.base.log_std.exp())
    y = torch.tanh(u)
    return y, (normal.log_prob(u) - torch.log(1 - y**2)).sum(-1)


def reference_sac(model, batches, seeds, cfg: SACConfig, target_entropy: float) -> None:
    """Stable-Baselines3's order, one step per batch: temperature, critics, actor, targets."""
    critics, targets, log_alpha = model.critics, model.targets, model.log_alpha
    adam = lambda params: torch.optim.Adam(params, lr=cfg.learning_rate, foreach=False)  # noqa: E731
    actor_opt, critic_opt = adam(model.actor.parameters()), adam(critics.parameters())
    alpha_opt = adam([log_alpha])
    for batch, seed in zip(batches, seeds, strict=True):
        dist = model.actor.distribution(batch["obs"])
        next_dist = model.actor.distribution(batch["next_obs"])
        torch.manual_seed(seed)  # the update's two draws, in its order
        action, log_pi = squashed(dist, dist.base.rsample())
        next_action, next_log_pi = squashed(next_dist, next_dist.base.rsample())
        alpha = log_alpha.detach().exp()
        if cfg.alpha is None:
            alpha_loss = -(log_alpha * (log_pi.detach() + target_entropy)).mean()
            reference_step([log_alpha], alpha_opt, alpha_loss, None)
        with torch.no_grad():
            soft_value = torch.min(*targets(batch["next_obs"], next_action.detach()))
            soft_value = soft_value - alpha * next_log_pi
            y = batch["rewards"] + cfg.gamma * (1 - batch["terminated"]) * soft_value
        q1, q2 = critics(batch["obs"], batch["actions"])
        critic_loss = 0.5 * (((q1 - y) ** 2).mean() + ((q2 - y) ** 2).mean())
        reference_step(list(critics.parameters()), critic_opt, critic_loss, cfg.max_grad_norm)
        actor_loss = (alpha * log_pi - torch.min(*critics(batch["obs"], action))).mean()
        reference_step(list(model.actor.parameters()), actor_opt, actor_loss, cfg.max_grad_norm)
        with torch.no_grad():
            for target, critic in zip(targets.parameters(), critics.parameters(), strict=True):
                target.mul_(1 - cfg.tau).add_(cfg.tau * critic)


SAC_OPTIONS = {
    "defaults (automatic alpha)": {},
    "fixed alpha": {"alpha": 0.2},
    "alpha_init, target_entropy": {"alpha_init": 0.3, "target_entropy": -0.4},
    "tau, gamma": {"tau": 0.5, "gamma": 0.9},
    "gradient clipping": {"max_grad_norm": 0.1},
    "learning rate": {"learning_rate": 0.01},
}


@pytest.mark.parametrize("option", list(SAC_OPTIONS))
def test_sac_updates_equal_a_from_scratch_sac(option):
    config = SACConfig(hidden_sizes=(16, 16), **{"learning_rate": 0.003, **SAC_OPTIONS[option]})
    torch.manual_seed(0)
    sac = SAC(config, make_vec_env("Pendulum-v1", 1), seed=0)  # actions in [-2, 2]
    # Q' starts as Q (the reference below takes the library's starting targets as given)
    assert torch.equal(flat(sac.model.targets), flat(sac.model.critics))
    start = copy.deepcopy(sac.model)
    batches, seeds = [sac_batch(k) for k in range(3)], [11, 12, 13]
    for batch, seed in zip(batches, seeds, strict=True):
        torch.manual_seed(seed)
        sac.update(batch)
    before = flat(start)
    expected_entropy = -1.0 if config.target_entropy is None else config.target_entropy
    reference_sac(start, batches, seeds, config, expected_entropy)
    assert (before - flat(sac.model)).abs().max() > 1e-3
    assert (flat(start) - flat(sac.model)).abs().max() < 2e-5, option
    if config.alpha is not None:  # a fixed temperature is never trained
        assert sac.model.log_alpha.item() == pytest.approx(math.log(config.alpha))


def test_sac_collects_train_freq_steps_and_updates_gradient_steps_times_once_learning_starts():
    config = SACConfig(n_envs=2, train_freq=3, gradient_steps=2, learning_starts=7,
                       hidden_sizes=(8,), batch_size=4)  # fmt: skip
    sac = SAC(config, make_vec_env("Pendulum-v1", 2), seed=0)
    updates = []
    real_update = sac.update
    sac.update = lambda batch: updates.append(len(batch["obs"])) or real_update(batch)
    for expected_steps, expected_updates in [(6, 0), (12, 2), (18, 4)]:
        row = sac.iterate()
        assert row["steps"] == 6  # 3 vector steps x 2 envs (no episode ends this early)
        assert (sac.steps, sac.buffer.size, len(updates)) == (
            expected_steps,
            expected_steps,
            expected_updates,
        )
    assert updates == [4] * 4


def test_sac_acts_at_random_until_learning_starts_counted_in_env_steps():
    """learning_starts=7 with 2 envs: the vector steps taken at 0, 2, 4 and 6 steps done are
    random, the one at 8 is the policy's, also when the switch falls inside a round of
    train_freq=3 vector steps (as Stable-Baselines3 counts)."""
    config = SACConfig(n_envs=2, train_freq=3, learning_starts=7, hidden_sizes=(8,), batch_size=4)
    sac = SAC(config, make_vec_env("Pendulum-v1", 2), seed=0)
    acted = []  # steps done when the policy chose the actions
    act = sac.stepper.act
    sac.stepper.act = lambda obs, deterministic: acted.append(sac.steps) or act(obs, deterministic)
    sac.iterate()
    sac.iterate()
    assert sac.steps == 12 and acted == [8, 10]
