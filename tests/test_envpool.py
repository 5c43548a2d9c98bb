"""The EnvPool backend (``pgrad.vec_envpool``) against Gymnasium's own vector envs, step by step."""

from functools import partial

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

from pgrad.errors import PgradError

pytest.importorskip("envpool")
from pgrad.vec_envpool import make

NEXT_STEP = {"autoreset_mode": AutoresetMode.NEXT_STEP}


def gymnasium_vec(env_id, n, **kwargs):
    return gym.make_vec(env_id, n, vectorization_mode="sync", vector_kwargs=NEXT_STEP, **kwargs)


def set_cartpole(env, obs):
    env.state = obs.astype(np.float64)


def set_hopper(env, obs):  # obs = qpos[1:], qvel; x does not enter the dynamics or the reward
    env.set_state(np.concatenate([[0.0], obs[:5]]), obs[5:])


def cartpole_actions(obs, rng):
    """Random in env 0; env 1 balances the pole until the time limit."""
    x, x_dot, theta, theta_dot = obs[1]
    balance = int(theta + 0.5 * theta_dot + 0.01 * x + 0.1 * x_dot > 0)
    return np.array([rng.integers(2), balance])


def hopper_actions(obs, rng):
    return rng.uniform(-1, 1, size=(2, 3)).astype(np.float32)


@pytest.mark.parametrize(
    "env_id, set_state, policy, steps, options",
    [
        ("CartPole-v1", set_cartpole, cartpole_actions, 200, {"max_episode_steps": 40}),
        ("Hopper-v5", set_hopper, hopper_actions, 200, {}),
    ],
)
def test_same_batches_as_gymnasium(env_id, set_state, policy, steps, options):
    """Given the same actions, the same observations, rewards and flags as Gymnasium's NEXT_STEP
    vector env, across episode ends (CartPole: terminations in env 0, truncations in env 1).

    The two libraries draw initial states from different generators, so Gymnasium's sub-envs are
    put into EnvPool's initial state at the start of every episode; everything after that is
    each library's own dynamics. Hopper's observation is its whole state (but x) in float64, and
    the two agree to ~1e-14. CartPole's is float32 while both libraries integrate in float64, so
    the copied state is off by a rounding error, which the unstable pole grows ~e^0.1 a step
    under an open-loop action sequence: hence the 40-step time limit."""
    if env_id.startswith("Hopper"):
        pytest.importorskip("mujoco")
    ours, theirs = make(env_id, 2, **options), gymnasium_vec(env_id, 2, **options)
    obs, _ = ours.reset(seed=0)
    theirs.reset(seed=0)
    for i in range(2):
        set_state(theirs.envs[i].unwrapped, obs[i])
    rng = np.random.default_rng(0)
    autoreset = np.zeros(2, dtype=bool)
    terminations, truncations = np.zeros(2, dtype=int), np.zeros(2, dtype=int)
    for _ in range(steps):
        action = policy(obs, rng)
        obs, reward, terminated, truncated, _ = ours.step(action)
        obs2, reward2, terminated2, truncated2, _ = theirs.step(action)
        np.testing.assert_array_equal(terminated, terminated2)
        np.testing.assert_array_equal(truncated, truncated2)
        np.testing.assert_allclose(reward, reward2, rtol=1e-6, atol=1e-6)
        stepped = ~autoreset
        np.testing.assert_allclose(obs[stepped], obs2[stepped], rtol=1e-5, atol=1e-6)
        for i in np.flatnonzero(autoreset):  # a new episode: start Gymnasium's where EnvPool's is
            set_state(theirs.envs[i].unwrapped, obs[i])
        terminations += terminated
        truncations += truncated
        autoreset = terminated | truncated
    assert (terminations + truncations >= 1).all()
    if env_id == "CartPole-v1":
        assert terminations[0] >= 2 and truncations[1] >= 2
    ours.close()
    theirs.close()


ATARI_PLAIN = {  # EnvPool's Atari wrappers that Gymnasium's AtariPreprocessing has no match for
    "noop_max": 1,
    "use_fire_reset": False,
    "episodic_life": False,
    "reward_clip": False,
}


def test_atari_frames_identical_to_gymnasium():
    """Breakout without sticky actions, random no-ops, fire reset, episodic life or clipping:
    bit-identical stacked frames, rewards and flags to Gymnasium's AtariPreprocessing +
    FrameStackObservation chain, across a game over and into the next game."""
    ale_py = pytest.importorskip("ale_py")
    pytest.importorskip("cv2")
    gym.register_envs(ale_py)
    preprocessing = partial(
        gym.wrappers.AtariPreprocessing, noop_max=1, frame_skip=4, screen_size=84,
        terminal_on_life_loss=False, grayscale_obs=True, scale_obs=False,
    )  # fmt: skip
    wrappers = [preprocessing, partial(gym.wrappers.FrameStackObservation, stack_size=4)]
    ours = make("BreakoutNoFrameskip-v4", 2, num_threads=2, **ATARI_PLAIN)
    theirs = gymnasium_vec("BreakoutNoFrameskip-v4", 2, wrappers=wrappers)
    obs, _ = ours.reset(seed=0)
    obs2, _ = theirs.reset(seed=0)
    np.testing.assert_array_equal(obs, obs2)
    rng = np.random.default_rng(0)
    games, after = np.zeros(2, dtype=int), 0
    while after < 20:
        action = rng.integers(4, size=2)
        obs, reward, terminated, truncated, _ = ours.step(action)
        obs2, reward2, terminated2, truncated2, _ = theirs.step(action)
        np.testing.assert_array_equal(obs, obs2)
        np.testing.assert_array_equal(reward, reward2)
        np.testing.assert_array_equal(terminated, terminated2)
        np.testing.assert_array_equal(truncated, truncated2)
        games += terminated | truncated
        after += (games >= 1).all()
    ours.close()
    theirs.close()


def test_next_step_autoreset():
    """The step after an episode's end resets that sub-env: the first observation of the new
    episode, reward 0, neither flag, and the action is ignored (two pools seeded alike, given
    other actions on exactly those steps, stay identical)."""
    a, b = make("CartPole-v1", 3), make("CartPole-v1", 3)
    a.reset(seed=1)
    b.reset(seed=1)
    rng = np.random.default_rng(1)
    autoreset = np.zeros(3, dtype=bool)
    resets = 0
    for _ in range(200):
        action = rng.integers(2, size=3)
        out_a = a.step(action)
        out_b = b.step(np.where(autoreset, 1 - action, action))
        for x, y in zip(out_a[:4], out_b[:4], strict=True):
            np.testing.assert_array_equal(x, y)
        obs, reward, terminated, truncated, _ = out_a
        assert (reward[autoreset] == 0).all()
        assert not (terminated | truncated)[autoreset].any()
        assert (np.abs(obs[autoreset]) <= 0.05).all()  # CartPole's initial-state range
        assert (reward[~autoreset] == 1).all()
        done = terminated | truncated
        if done.any():  # a real last state: out of bounds (a termination in CartPole)
            x, theta = obs[done, 0], obs[done, 2]
            assert ((np.abs(x) > 2.4) | (np.abs(theta) > 12 * 2 * np.pi / 360)).all()
        resets += autoreset.sum()
        autoreset = done
    assert resets >= 6


def test_seeded_reset_is_deterministic():
    """``reset(seed=s)`` rebuilds the pool seeded ``s``: the same episodes every time."""

    def run(env, seed, steps=60):
        obs, _ = env.reset(seed=seed)
        out = [obs]
        for t in range(steps):
            out.append(env.step(np.full(env.num_envs, t % env.single_action_space.n))[0])
        return np.stack(out)

    env = make("ALE/Breakout-v5", 1)  # sticky actions and random no-ops: seeded randomness
    first = run(env, 3)
    np.testing.assert_array_equal(run(env, 3), first)
    cartpole = make("CartPole-v1", 2)
    np.testing.assert_array_equal(run(cartpole, 7), run(make("CartPole-v1", 2), 7))
    assert not np.array_equal(run(cartpole, 7), run(cartpole, 8))
    first_obs = make("CartPole-v1", 2, seed=7).reset()[0]  # a seed option: the first reset's
    np.testing.assert_array_equal(first_obs, run(cartpole, 7)[0])


def test_breakout_true_episode_statistics():
    """Episodic life and clipped rewards inside EnvPool; ``info["episode"]`` reports whole games:
    the sum of the unclipped rewards over all lives and the steps played, set on the step where
    the last life is lost, never on a life lost before it."""
    env = make("ALE/Breakout-v5", 2, num_threads=2)
    assert env.metadata["pgrad_episode_statistics"]
    assert env.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    assert env.pgrad_env_id == "ALE/Breakout-v5"
    assert env.single_observation_space == gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    assert env.single_action_space == gym.spaces.Discrete(4)
    _, info = env.reset(seed=0)
    lives = info["lives"].copy()
    rng = np.random.default_rng(0)
    score, length, lives_lost = np.zeros(2), np.zeros(2, dtype=int), np.zeros(2, dtype=int)
    autoreset = np.zeros(2, dtype=bool)
    games = np.zeros(2, dtype=int)
    while (games < 1).any():
        obs, reward, terminated, truncated, info = env.step(rng.integers(4, size=2))
        assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8
        assert set(np.unique(reward)) <= {-1.0, 0.0, 1.0}
        np.testing.assert_array_equal(reward, np.sign(info["reward"]))
        done = terminated | truncated
        assert (reward[autoreset] == 0).all() and not done[autoreset].any()
        score += info["reward"]
        length += ~autoreset
        lost = info["lives"] < lives
        assert (terminated[lost]).all()  # episodic life: every life lost ends an episode
        lives_lost += lost
        lives = info["lives"].copy()
        ended = info.get("_episode", np.zeros(2, dtype=bool))
        assert not (ended & ~done).any()
        for i in np.flatnonzero(done):
            if not ended[i]:  # a life lost, the game goes on
                assert info["lives"][i] > 0
                continue
            assert info["episode"]["r"][i] == score[i]
            assert info["episode"]["l"][i] == length[i] == info["elapsed_step"][i]
            assert info["lives"][i] == 0 and lives_lost[i] == 5
            score[i], length[i], lives_lost[i] = 0, 0, 0
            games[i] += 1
        autoreset = done
    env.close()


@pytest.mark.parametrize("env_id", ["Foo-v0", "ALE/NotAGame-v5", "Breakout-v4", "FrozenLake-v1"])
def test_unsupported_id_is_a_one_line_error(env_id):
    with pytest.raises(PgradError, match="no EnvPool backend") as e:
        make(env_id, 2)
    assert "\n" not in str(e.value)


def test_spaces_match_gymnasium():
    for env_id in ["CartPole-v1", "Pendulum-v1", "HalfCheetah-v5"]:
        if env_id == "HalfCheetah-v5" and not _has("mujoco"):
            continue
        ours, theirs = make(env_id, 3), gym.make_vec(env_id, 3, vectorization_mode="sync")
        assert ours.single_observation_space == theirs.single_observation_space
        assert ours.single_action_space == theirs.single_action_space
        assert ours.observation_space == theirs.observation_space
        assert ours.action_space == theirs.action_space
        theirs.close()


def _has(module):
    try:
        __import__(module)
    except ImportError:
        return False
    return True
