"""Soft actor-critic (Haarnoja et al., 2018): maximum-entropy RL with an automatic temperature.

The objective is J = E[ sum_t gamma^t (r_t + alpha H(pi(.|s_t))) ]. With a tanh-squashed Gaussian
policy (``policies.SquashedNormal``), twin Q-functions Q_1, Q_2 and their Polyak-averaged
targets Q'_1, Q'_2, one gradient step on a minibatch from the replay buffer is:

    soft Bellman target   y = r + gamma (1 - terminated) [min_j Q'_j(s', a') - alpha log pi(a'|s')],
                          a' ~ pi(.|s')  (a truncated transition bootstraps: terminated = 0)
    critic loss           sum_j mean (Q_j(s, a) - y)^2 / 2
    actor loss            mean [alpha log pi(a~|s) - min_j Q_j(s, a~)], a~ reparameterised
    temperature loss      -mean [ log alpha * (log pi(a~|s) + H_target) ],  H_target = -dim(A)
    targets               Q' <- (1 - tau) Q' + tau Q

The temperature loss's gradient is -(E[log pi] + H_target) = H(pi) - H_target: gradient descent
lowers alpha when the policy's entropy is above the target and raises it when below.

Units: actions, log pi and entropies are those of the squashed action y = tanh(u) in [-1, 1],
before the affine map a = loc + scale * tanh(u) to the ``Box`` bounds (Stable-Baselines3's
convention). By the change of variables,

    log pi(y|s) = sum_i [ log N(u_i; mu_i(s), sigma_i(s)) - log(1 - tanh(u_i)^2) ]
                = log pi(a|s) + sum_i log scale_i,

so H_target = -dim(A) means the same on every env, and the three losses, the targets and alpha
do not depend on the bounds. (With log pi(a|s), bounds of +-2 on Pendulum would steer the entropy
in [-1, 1] units to -1 - log 2 = -1.69, and add alpha * sum_i log scale_i to every target.)

Order and defaults follow Stable-Baselines3 (alpha, then critics, then actor, then targets; alpha
1.0 at the start; 256x256 ReLU networks; Adam 3e-4; batch 256; tau 0.005). Actions are stored and
fed to the critics in the same [-1, 1] units.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Literal

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pgrad.algos.common import (
    FlatParameters,
    PolicyConfig,
    check_loss,
    episode_stats,
    flatten,
)
from pgrad.config import ConfigError
from pgrad.envs import spaces
from pgrad.errors import PgradError
from pgrad.numpy_policy import NumpyPolicy
from pgrad.policies import ObservationEncoder, SquashedNormal, make_policy, mlp
from pgrad.replay import ReplayBuffer


@dataclass
class SACConfig(PolicyConfig):
    n_envs: int = 1
    learning_rate: float = 3e-4
    hidden_sizes: tuple[int, ...] = (256, 256)
    activation: Literal["tanh", "relu", "elu", "gelu"] = "relu"
    std: Literal["parameter", "state"] = "state"
    squash: Literal["tanh"] | None = "tanh"
    ortho_init: bool = False
    normalize_advantage: bool = False
    buffer_size: int = 1_000_000
    """Transitions kept in the replay buffer."""
    batch_size: int = 256
    learning_starts: int = 100
    """Steps of uniformly random actions before the first update."""
    tau: float = 0.005
    """Polyak coefficient of the target critics."""
    train_freq: int = 1
    """Vector-env steps between rounds of updates."""
    gradient_steps: int = 1
    """Updates per round (update-to-data ratio = gradient_steps / (train_freq * n_envs))."""
    alpha: float | None = None
    """Fixed temperature; None tunes it automatically towards ``target_entropy``."""
    alpha_init: float = 1.0
    target_entropy: float | None = None
    """H_target, in the units of the squashed action in [-1, 1] (any bounds); default -dim(A)."""

    def check(self) -> None:
        super().check()
        for key in ("buffer_size", "batch_size", "train_freq", "gradient_steps"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.learning_starts < 0:
            raise ConfigError(f"learning_starts must be >= 0, got {self.learning_starts}")
        if not 0.0 < self.tau <= 1.0:
            raise ConfigError(f"tau must be in (0, 1], got {self.tau}")
        if self.alpha is not None and not self.alpha > 0:
            raise ConfigError(f"alpha must be > 0 or null (automatic), got {self.alpha}")
        if not self.alpha_init > 0:
            raise ConfigError(f"alpha_init must be > 0, got {self.alpha_init}")
        if self.squash != "tanh" or self.std != "state":
            raise ConfigError("sac's policy is a tanh-squashed Gaussian: squash tanh, std state")
        if self.normalize_obs or self.normalize_reward:
            raise ConfigError("sac does not support normalize_obs/normalize_reward; set them false")


class TwinQ(nn.Module):
    """Q_1(s, a) and Q_2(s, a): two MLPs on [encode(s), a scaled to [-1, 1]]."""

    def __init__(self, observation_space: gym.Space, action_dim: int, config: SACConfig):
        super().__init__()
        self.encoder = ObservationEncoder(observation_space)
        sizes = [self.encoder.dim + action_dim, *config.hidden_sizes, 1]
        self.q1 = mlp(sizes, config.activation, ortho_init=config.ortho_init)
        self.q2 = mlp(sizes, config.activation, ortho_init=config.ortho_init)

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = torch.cat([self.encoder(obs), action], -1)
        return self.q1(x).squeeze(-1), self.q2(x).squeeze(-1)


class SACModel(nn.Module):
    """The policy, the twin critics, their targets and log alpha: one state dict."""

    def __init__(self, config: SACConfig, observation_space: gym.Space, action_space: gym.Space):
        super().__init__()
        if not isinstance(action_space, gym.spaces.Box):
            raise PgradError(f"sac needs continuous (Box) actions; this env has {action_space}")
        self.actor = make_policy(
            observation_space, action_space, config.hidden_sizes, config.activation,
            std="state", squash="tanh", log_std_init=config.log_std_init,
            ortho_init=config.ortho_init,
        )  # fmt: skip
        action_dim = int(np.prod(action_space.shape))
        self.critics = TwinQ(observation_space, action_dim, config)
        self.targets = copy.deepcopy(self.critics).requires_grad_(False)
        alpha = config.alpha if config.alpha is not None else config.alpha_init
        self.log_alpha = nn.Parameter(torch.tensor(math.log(alpha)))

    def forward(self, obs: torch.Tensor):
        return self.actor(obs)

    def act(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        return self.actor.act(obs, deterministic)


def build_model(config: SACConfig, observation_space: gym.Space, action_space: gym.Space):
    return SACModel(config, observation_space, action_space)


def squashed_sample(dist: SquashedNormal) -> tuple[torch.Tensor, torch.Tensor]:
    """y = tanh(u) = (a - loc) / scale in [-1, 1], reparameterised, and its log-density
    log pi(y|s) = log pi(a|s) + sum_i log scale_i (change of variables; module docstring)."""
    action, log_prob = dist.rsample_with_log_prob()
    return (action - dist.loc) / dist.scale, log_prob + torch.log(dist.scale).sum(-1)


def soft_target(
    rewards: torch.Tensor,
    terminated: torch.Tensor,
    next_q1: torch.Tensor,
    next_q2: torch.Tensor,
    next_log_prob: torch.Tensor,
    alpha: torch.Tensor | float,
    gamma: float,
) -> torch.Tensor:
    """y = r + gamma (1 - terminated) (min(Q'_1, Q'_2)(s', a') - alpha log pi(a'|s'))."""
    soft_value = torch.minimum(next_q1, next_q2) - alpha * next_log_prob
    return rewards + gamma * (1.0 - terminated) * soft_value


def temperature_loss(
    log_alpha: torch.Tensor, log_prob: torch.Tensor, target_entropy: float
) -> torch.Tensor:
    """-mean[log alpha (log pi + H_target)], log pi detached: descends on alpha when the
    entropy -E[log pi] is above H_target, ascends when it is below."""
    return -(log_alpha * (log_prob.detach() + target_entropy)).mean()


class _Optimizers:
    """The actor's, the critics' and the temperature's Adam, saved and restored as one."""

    def __init__(self, optimizers: dict[str, torch.optim.Optimizer]):
        self.optimizers = optimizers

    @property
    def param_groups(self) -> list[dict]:
        return [g for o in self.optimizers.values() for g in o.param_groups]

    def state_dict(self) -> dict:
        return {k: o.state_dict() for k, o in self.optimizers.items()}

    def load_state_dict(self, state: dict) -> None:
        for k, o in self.optimizers.items():
            o.load_state_dict(state[k])


class SAC:
    def __init__(self, config: SACConfig, envs: gym.vector.VectorEnv, seed: int | None = None):
        self.config, self.envs = config, envs
        observation_space, action_space = spaces(envs)
        self.model = SACModel(config, observation_space, action_space)
        self.action_dim = int(np.prod(action_space.shape))
        self.low, self.high = action_space.low, action_space.high
        self.loc = (self.high + self.low) / 2
        self.scale = (self.high - self.low) / 2
        self.target_entropy = (
            config.target_entropy if config.target_entropy is not None else -float(self.action_dim)
        )
        self.actor_params = FlatParameters(self.model.actor)
        self.critic_params = FlatParameters(self.model.critics)
        # The targets as views of one buffer too: one lerp per Polyak update.
        self.target_params = flatten(list(self.model.targets.parameters()))
        lr = config.learning_rate
        optimizers = {
            "actor": torch.optim.Adam([self.actor_params.param], lr=lr, fused=True),
            "critics": torch.optim.Adam([self.critic_params.param], lr=lr, fused=True),
        }
        if config.alpha is None:
            optimizers["alpha"] = torch.optim.Adam([self.model.log_alpha], lr=lr)
        self.optimizer = _Optimizers(optimizers)
        self.buffer = ReplayBuffer(
            min(config.buffer_size, config.steps), observation_space.shape, self.action_dim
        )
        self.rng = np.random.default_rng(int(torch.randint(0, 2**62, ())))
        self.steps = 0
        self.obs, _ = envs.reset(seed=seed)
        self.autoreset = np.zeros(envs.num_envs, dtype=bool)
        self.running_return = np.zeros(envs.num_envs)
        self.running_length = np.zeros(envs.num_envs, dtype=np.int64)

    # Acting

    def _policy_actions(self, obs: np.ndarray) -> np.ndarray:
        key = [p.data_ptr() for p in self.model.actor.parameters()]
        if getattr(self, "_fast_key", None) != key:
            self._fast_key, self._fast = key, NumpyPolicy.of(self.model.actor, self.rng)
        if self._fast is not None:
            return self._fast(np.asarray(obs), False)[0]
        with torch.no_grad():
            return self.model.actor.act(torch.as_tensor(obs, dtype=torch.float32)).numpy()

    def _env_step(self) -> tuple[int, list[float], list[int]]:
        """One vector-env step into the buffer; (transitions stored, finished returns, lengths)."""
        n = self.envs.num_envs
        if self.steps < self.config.learning_starts:
            action = self.rng.uniform(self.low, self.high, size=(n, *self.low.shape))
        else:
            action = self._policy_actions(self.obs).reshape(n, *self.low.shape)
        next_obs, reward, terminated, truncated, _ = self.envs.step(action)
        valid = ~self.autoreset  # NEXT_STEP: the step after an episode's end is not a transition
        if valid.any():
            self.buffer.add(
                obs=self.obs[valid],
                actions=((action - self.loc) / self.scale).reshape(n, -1)[valid],
                rewards=reward[valid],
                next_obs=next_obs[valid],
                terminated=terminated[valid],
            )
        self.running_return += np.where(valid, reward, 0.0)
        self.running_length += valid
        done = (terminated | truncated) & valid
        returns = self.running_return[done].tolist()
        lengths = self.running_length[done].tolist()
        self.running_return[terminated | truncated] = 0.0
        self.running_length[terminated | truncated] = 0
        self.autoreset = terminated | truncated
        self.obs = next_obs
        return int(valid.sum()), returns, lengths

    # Learning

    def update(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """One SAC gradient step (module docstring); returns its diagnostics, stacked."""
        cfg, model = self.config, self.model
        optimizers, clip = self.optimizer.optimizers, cfg.max_grad_norm
        obs = batch["obs"]
        action, log_prob = squashed_sample(model.actor.distribution(obs))

        alpha = model.log_alpha.detach().exp()
        if cfg.alpha is None:
            alpha_loss = temperature_loss(model.log_alpha, log_prob, self.target_entropy)
            check_loss(alpha_loss, {"alpha_loss": alpha_loss})
            optimizers["alpha"].zero_grad()
            alpha_loss.backward()
            optimizers["alpha"].step()
        else:
            alpha_loss = torch.zeros(())

        with torch.no_grad():
            next_dist = model.actor.distribution(batch["next_obs"])
            next_action, next_log_prob = squashed_sample(next_dist)
            next_q1, next_q2 = model.targets(batch["next_obs"], next_action)
            y = soft_target(batch["rewards"], batch["terminated"], next_q1, next_q2,
                            next_log_prob, alpha, cfg.gamma)  # fmt: skip
        q1, q2 = model.critics(obs, batch["actions"])
        critic_loss = 0.5 * (F.mse_loss(q1, y) + F.mse_loss(q2, y))
        self.critic_params.gradient_step(
            optimizers["critics"], critic_loss, clip, {"critic_loss": critic_loss}
        )

        # The actor loss needs dQ/da, not dQ/d(critic weights): freezing the critics skips the
        # weight-gradient half of their backward pass (the math is unchanged).
        model.critics.requires_grad_(False)
        q1_pi, q2_pi = model.critics(obs, action)
        actor_loss = (alpha * log_prob - torch.minimum(q1_pi, q2_pi)).mean()
        try:
            self.actor_params.gradient_step(
                optimizers["actor"], actor_loss, clip, {"actor_loss": actor_loss}
            )
        finally:
            model.critics.requires_grad_(True)

        with torch.no_grad():
            self.target_params.lerp_(self.critic_params.param, cfg.tau)
            return torch.stack([
                critic_loss, actor_loss, alpha_loss.detach(), alpha, -log_prob.mean(),
                q1.mean(), q2.mean(),
            ])  # fmt: skip

    METRICS = ("critic_loss", "actor_loss", "alpha_loss", "alpha", "entropy", "q1", "q2")

    def iterate(self) -> dict[str, float]:
        """``train_freq`` vector-env steps, then ``gradient_steps`` updates once learning starts."""
        cfg = self.config
        steps, returns, lengths = 0, [], []
        for _ in range(cfg.train_freq):
            n, r, length = self._env_step()
            steps += n
            returns += r
            lengths += length
        self.steps += steps
        row = {
            "steps": steps,
            **episode_stats(returns, lengths),
            **dict.fromkeys(self.METRICS, float("nan")),
        }
        if self.steps >= cfg.learning_starts and self.buffer.size >= 1:
            diagnostics = [self.update(self.buffer.sample(cfg.batch_size))
                           for _ in range(cfg.gradient_steps)]  # fmt: skip
            means = torch.stack(diagnostics).mean(0).tolist()
            row.update(zip(self.METRICS, means, strict=True))
        return row

    def close(self) -> None:
        """Nothing to release: the envs belong to the caller."""

    # Resume

    def state(self) -> dict:
        return {
            "steps": self.steps,
            "buffer": self.buffer.state(),
            "rng": self.rng.bit_generator.state,
            "obs": self.obs,
            "autoreset": self.autoreset,
            "running_return": self.running_return,
            "running_length": self.running_length,
        }

    def load_state(self, state: dict, envs: gym.vector.VectorEnv, env_restored: bool) -> None:
        self.steps = state["steps"]
        self.buffer.load_state(state["buffer"])
        self.rng.bit_generator.state = state["rng"]
        self.envs = envs
        if env_restored:
            self.obs, self.autoreset = state["obs"], state["autoreset"]
            self.running_return = state["running_return"]
            self.running_length = state["running_length"]
        else:
            self.obs, _ = envs.reset()
            self.autoreset[:] = False
            self.running_return[:] = 0.0
            self.running_length[:] = 0
