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

Exploration by gSDE (``std: gsde``; Raffin et al., 2021, ``policies.GaussianPolicy``): when
acting, u = mu(s) + theta^T z(s) with z(s) the actor body's features and theta ~ N(0, sigma^2)
drawn per env at the start of each round of ``train_freq`` env steps and held through it
(Stable-Baselines3's ``use_sde`` with ``sde_sample_freq=-1``), so the noise is correlated in time;
for every theta the policy's distribution over draws is N(mu(s), v(s)), v_j(s) = sum_i z_i(s)^2
sigma_ij^2, and that marginal, squashed, is the pi(a|s) of the three losses above. The actor loss
reparameterises it with independent noise per sample (u = mu + sqrt(v) eps): the same
expectation per state as Stable-Baselines3's one theta shared by the minibatch. As in SB3's SAC,
v's gradient trains the body's features as well as sigma, and mu(s) is clamped to [-2, 2]
before the squash (``critics.SAC_GSDE_MEAN_CLIP``); on MountainCarContinuous-v0 the policy
without these two (z detached, mu free) lost its deterministic policy on 2 of 3 seeds.

On images (``encoder: auto``, ``encoders.NatureCNN``) the actor and the critics each have a
CNN: the critics' one is shared by Q_1 and Q_2 and trained by the critic loss alone (the actor
loss differentiates the critics with respect to the action only), the actor's by the actor
loss, as in Stable-Baselines3's SAC; the replay buffer keeps the pixels as ``uint8``.

Order and defaults follow Stable-Baselines3 (alpha, then critics, then actor, then targets; alpha
1.0 at the start; 256x256 ReLU networks; Adam 3e-4; batch 256; tau 0.005). Actions are stored and
fed to the critics in the same [-1, 1] units.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F

from pgrad import device
from pgrad.config import ConfigError, PolicyConfig, at_least, positive
from pgrad.critics import SACModel
from pgrad.encoders import storage_dtype
from pgrad.envs import spaces
from pgrad.fast import FlatParameters
from pgrad.fast.flat import flatten
from pgrad.losses import temperature_loss
from pgrad.optim import OptimizerGroup, check_loss
from pgrad.policies import SquashedNormal
from pgrad.replay import ReplayBuffer
from pgrad.returns import soft_target
from pgrad.rollout import Stepper, episode_stats

UNUSED = {
    "entropy_coef": "its entropy weight is alpha (a number, or null: tuned to target_entropy)",
    "value_coef": "its critics have an optimizer of their own",
    "normalize_advantage": "it has no advantages",
    "shared": "its actor and critics are separate networks",
    "value_head_gain": "it has no V(s) head",
}
"""Keys SACConfig inherits and SAC has no use for: a value other than the default is an error,
not silently ignored."""


@dataclass
class SACConfig(PolicyConfig):
    n_envs: int = 1
    learning_rate: float = 3e-4
    hidden_sizes: tuple[int, ...] = (256, 256)
    activation: Literal["tanh", "relu", "elu", "gelu"] = "relu"
    std: Literal["state", "gsde"] = "state"
    """``state``: sigma(s) from a head on the actor's body, fresh noise every step; ``gsde``:
    exploration by gSDE (module docstring), its noise held for each round of ``train_freq``
    steps (or ``gsde_sample_every`` steps, if fewer)."""
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
            at_least(self, key, 1)
        at_least(self, "learning_starts", 0)
        if not 0.0 < self.tau <= 1.0:
            raise ConfigError(f"tau must be in (0, 1], got {self.tau}")
        if self.alpha is not None and not self.alpha > 0:
            raise ConfigError(f"alpha must be > 0 or null (automatic), got {self.alpha}")
        positive(self, "alpha_init")
        if self.squash != "tanh" or self.std not in ("state", "gsde"):
            raise ConfigError(
                "sac's policy is a tanh-squashed Gaussian: squash tanh, std state or gsde"
            )
        if self.normalize_obs or self.normalize_reward:
            raise ConfigError("sac does not support normalize_obs/normalize_reward; set them false")
        defaults = {f.name: f.default for f in fields(self)}
        for key, why in UNUSED.items():
            if getattr(self, key) != defaults[key]:
                raise ConfigError(f"sac does not use {key} (got {getattr(self, key)!r}): {why}")


def build_model(config: SACConfig, observation_space: gym.Space, action_space: gym.Space):
    return SACModel(config, observation_space, action_space)


def squashed_sample(dist: SquashedNormal) -> tuple[torch.Tensor, torch.Tensor]:
    """y = tanh(u) = (a - loc) / scale in [-1, 1], reparameterised, and its log-density
    log pi(y|s) = log pi(a|s) + sum_i log scale_i (change of variables; module docstring)."""
    action, log_prob = dist.rsample_with_log_prob()
    return (action - dist.loc) / dist.scale, log_prob + torch.log(dist.scale).sum(-1)


class SAC:
    def __init__(self, config: SACConfig, envs: gym.vector.VectorEnv, seed: int | None = None):
        self.config = config
        observation_space, action_space = spaces(envs)
        self.device = device.resolve(config.device)
        self.model = SACModel(config, observation_space, action_space).to(self.device)
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
        self.optimizer = OptimizerGroup(optimizers)
        self.buffer = ReplayBuffer(
            min(config.buffer_size, config.steps), observation_space.shape, self.action_dim,
            self.device, storage_dtype(observation_space.dtype),
        )  # fmt: skip
        self.stepper = Stepper(envs, config.fast)
        self.stepper.reset(seed)
        self.steps = 0

    def _env_step(self) -> int:
        """One vector-env step into the buffer (uniform random actions before
        ``learning_starts``); the number of transitions stored."""
        stepper, n = self.stepper, self.stepper.n
        if self.steps < self.config.learning_starts:
            action = stepper.rng.uniform(self.low, self.high, size=(n, *self.low.shape))
        else:
            with torch.no_grad():
                action = stepper.act(stepper.obs, False)[0].reshape(n, *self.low.shape)
        step = stepper.transition(action)
        valid = step.valid
        if valid.any():
            self.buffer.add(
                obs=step.obs[valid],
                actions=((action - self.loc) / self.scale).reshape(n, -1)[valid],
                rewards=step.reward[valid],
                next_obs=step.successors()[valid],
                terminated=step.terminated[valid],
            )
        return int(valid.sum())

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
            alpha_loss = torch.zeros((), device=self.device)

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
        self.stepper.use(self.model.actor)
        steps = 0
        for _ in range(cfg.train_freq):  # counted step by step: learning_starts may fall within
            stored = self._env_step()
            self.steps += stored
            steps += stored
        row = {
            "steps": steps,
            **episode_stats(*self.stepper.finished()),
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

    def state(self) -> dict:
        return {"steps": self.steps, "buffer": self.buffer.state(), "stepper": self.stepper.state()}

    def load_state(self, state: dict, envs: gym.vector.VectorEnv, env_restored: bool) -> None:
        self.steps = state["steps"]
        self.buffer.load_state(state["buffer"])
        if "stepper" not in state:  # a checkpoint from before the shared stepper
            keys = ("obs", "autoreset", "running_return", "running_length", "rng")
            state = {"stepper": {**{k: state[k] for k in keys}, "episode_returns": [],
                                 "episode_lengths": []}}  # fmt: skip
        self.stepper.load_state(state["stepper"], envs, env_restored)
