"""A CartPole that raises in ``step`` after a few hundred steps: for worker-crash tests
(``pgrad train a3c --env crash_env:CrashingCartPole-v0`` with this directory on PYTHONPATH)."""

import gymnasium as gym
from gymnasium.envs.classic_control.cartpole import CartPoleEnv

CRASH_AFTER = 300


class CrashingCartPole(CartPoleEnv):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.steps = 0

    def step(self, action):
        self.steps += 1
        if self.steps > CRASH_AFTER:
            raise RuntimeError("the env broke (deliberately)")
        return super().step(action)


gym.register("CrashingCartPole-v0", entry_point=CrashingCartPole, max_episode_steps=500)


class NanRewardCartPole(CartPoleEnv):
    """Rewards turn NaN after a few hundred steps (for the NaN guards of worker processes)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.steps = 0

    def step(self, action):
        self.steps += 1
        obs, reward, terminated, truncated, info = super().step(action)
        return (
            obs,
            float("nan") if self.steps > CRASH_AFTER else reward,
            terminated,
            truncated,
            info,
        )


gym.register("NanRewardCartPole-v0", entry_point=NanRewardCartPole, max_episode_steps=500)
