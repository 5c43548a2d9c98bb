"""Pixels: the Nature CNN encoder against a hand-run forward pass, its policy's log-probs and
entropies against ``torch.distributions`` on the same logits, uint8 storage, frame stacking and
Atari's episode semantics step by step on scripted envs, and a CNN policy exported to ONNX."""

from __future__ import annotations

import pickle

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from gymnasium.vector import AutoresetMode

from pgrad import atari
from pgrad.encoders import (
    FlatEncoder,
    NatureCNN,
    UnsupportedSpaceError,
    is_image,
    make_encoder,
    storage_dtype,
    uses_cnn,
)
from pgrad.policies import build_actor_critic, make_policy
from pgrad.replay import ReplayBuffer
from pgrad.rollout import Rollout, _Storage
from pgrad.train import resolve

IMAGE = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)


def test_the_encoder_is_chosen_from_the_space():
    assert is_image(IMAGE) and is_image(gym.spaces.Box(0, 255, (96, 96, 3), np.uint8))
    assert not is_image(gym.spaces.Box(-1, 1, (4,))) and not is_image(
        gym.spaces.Box(0, 1, (3, 4, 5))
    )
    assert isinstance(make_encoder(IMAGE), NatureCNN)
    assert isinstance(make_encoder(IMAGE, "mlp"), FlatEncoder)
    assert isinstance(make_encoder(gym.spaces.Box(-1, 1, (4,))), FlatEncoder)
    both = make_encoder(gym.spaces.Dict({"camera": IMAGE, "speed": gym.spaces.Box(-1, 1, (2,))}))
    assert both.dim == 512 + 2
    obs = {"camera": torch.zeros(3, 4, 84, 84, dtype=torch.uint8), "speed": torch.ones(3, 2)}
    out = both(obs)
    assert out.shape == (3, 514) and torch.equal(out[:, 512:], torch.ones(3, 2))


@pytest.mark.parametrize("side", [35, 36])
@pytest.mark.parametrize("layout", ["chw", "hwc"])
def test_the_cnn_is_chosen_exactly_where_it_fits(side, layout):
    """The Nature CNN's convolutions (8/4, 4/2, 3/1) need a side of 36: (36 - 8) // 4 + 1 = 8,
    (8 - 4) // 2 + 1 = 3, 3 - 3 + 1 = 1. A smaller image gets the flat encoder, and forcing the
    CNN on it is a one-line error, not a crash inside torch. 12 channels (stacked RGB) count."""
    shape = (12, side, side) if layout == "chw" else (side, side, 12)
    space = gym.spaces.Box(0, 255, shape, np.uint8)
    assert is_image(space) == (side >= 36)
    if side >= 36:
        features = make_encoder(space)(torch.zeros(2, *shape, dtype=torch.uint8))
        assert features.shape == (2, 512)
    else:
        assert isinstance(make_encoder(space), FlatEncoder)
        with pytest.raises(UnsupportedSpaceError, match=r"H, W >= 36"):
            make_encoder(space, "cnn")


def test_a_forced_cnn_on_a_dict_applies_to_its_rank_3_keys():
    """``encoder: cnn`` on {camera: stacked frames, speed: (2,)}: the CNN on the image key, the
    flat encoder on the vector (forcing the CNN on every key used to crash)."""
    space = gym.spaces.Dict({"camera": IMAGE, "speed": gym.spaces.Box(-1, 1, (2,))})
    both = make_encoder(space, "cnn")
    assert isinstance(both.encoders["camera"], NatureCNN)
    assert isinstance(both.encoders["speed"], FlatEncoder)
    assert both.dim == 514 and uses_cnn(space, "cnn")


def test_nature_cnn_is_the_dqn_network_on_pixels_over_255():
    torch.manual_seed(0)
    cnn = NatureCNN(IMAGE)
    obs = torch.randint(0, 256, (2, 4, 84, 84), dtype=torch.uint8)
    c1, c2, c3 = (m for m in cnn.convs if isinstance(m, torch.nn.Conv2d))
    x = obs.double() / 255
    x = F.relu(F.conv2d(x, c1.weight.double(), c1.bias.double(), stride=4))  # 20x20
    x = F.relu(F.conv2d(x, c2.weight.double(), c2.bias.double(), stride=2))  # 9x9
    x = F.relu(F.conv2d(x, c3.weight.double(), c3.bias.double(), stride=1))  # 7x7
    assert x.shape == (2, 64, 7, 7)
    expected = F.relu(x.flatten(1) @ cnn.linear.weight.double().T + cnn.linear.bias.double())
    torch.testing.assert_close(cnn(obs).double(), expected, rtol=1e-5, atol=1e-6)
    last = NatureCNN(gym.spaces.Box(0, 255, (84, 84, 4), np.uint8))
    last.load_state_dict(cnn.state_dict())  # channel-last images are permuted first
    torch.testing.assert_close(last(obs.permute(0, 2, 3, 1)), cnn(obs))


def test_cnn_policy_log_probs_and_entropy_are_the_categorical_of_its_logits():
    torch.manual_seed(0)
    cfg = resolve("ppo", "CartPole-v1", hidden_sizes=[])
    model = build_actor_critic(cfg, IMAGE, gym.spaces.Discrete(6))
    assert model.shared and isinstance(model.actor.encoder, NatureCNN)  # one trunk
    obs = torch.randint(0, 256, (5, 4, 84, 84), dtype=torch.uint8)
    logits = model.actor.logits(model.actor.encoder(obs))  # hidden_sizes []: no body
    reference = torch.distributions.Categorical(logits=logits)
    dist, value = model(obs)
    actions = torch.tensor([0, 1, 2, 3, 5])
    torch.testing.assert_close(dist.log_prob(actions), reference.log_prob(actions))
    torch.testing.assert_close(dist.entropy(), reference.entropy())
    assert value.shape == (5,) and torch.equal(value, torch.zeros(5))  # value head starts at 0
    # A continuous CNN policy: the Gaussian of its mean and log-std.
    gaussian = make_policy(IMAGE, gym.spaces.Box(-1, 1, (3,)), hidden_sizes=())
    d = gaussian.distribution(obs)
    a = torch.randn(5, 3)
    normal = torch.distributions.Normal(d.mean, d.stddev)
    torch.testing.assert_close(d.log_prob(a), normal.log_prob(a).sum(-1))


class Frames(gym.Env):
    """A scripted image env: frame k of an episode is filled with 10 * episode + k, episodes
    last ``length`` steps (terminated), the reward is k."""

    observation_space = gym.spaces.Box(0, 255, (84, 84), np.uint8)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, length: int = 3):
        self.length, self.episode, self.k = length, -1, 0

    def frame(self) -> np.ndarray:
        return np.full((84, 84), 10 * self.episode + self.k, dtype=np.uint8)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.episode, self.k = self.episode + 1, 0
        return self.frame(), {}

    def step(self, action):
        self.k += 1
        return self.frame(), float(self.k), self.k == self.length, False, {}


def _stacked_vector_env(n: int = 1) -> gym.vector.VectorEnv:
    def make():
        return gym.wrappers.FrameStackObservation(Frames(), 4)

    return gym.vector.SyncVectorEnv([make] * n, autoreset_mode=AutoresetMode.NEXT_STEP)


def test_frame_stacks_and_resets_step_by_step():
    """The stack starts as the reset frame four times, shifts one frame per step, never mixes
    two episodes, and the rollout stores it as the same bytes (uint8)."""
    envs = _stacked_vector_env()
    cfg = resolve("ppo", "CartPole-v1", hidden_sizes=[], n_steps=8, encoder="cnn")
    model = build_actor_critic(cfg, IMAGE, gym.spaces.Discrete(2))
    batch = Rollout(envs, n_steps=8, seed=0).collect(model)
    assert batch.obs.dtype == torch.uint8 and batch.obs.shape == (8, 1, 4, 84, 84)
    stacks = [tuple(int(v) for v in batch.obs[t, 0, :, 0, 0]) for t in range(8)]
    # s_t at each step (NEXT_STEP: the step after the terminal one is the ignored autoreset).
    assert stacks == [
        (0, 0, 0, 0), (0, 0, 0, 1), (0, 0, 1, 2),  # episode 0: frames 0, 1, 2, then it ends
        (0, 1, 2, 3),  # its terminal observation, where the autoreset step is taken
        (10, 10, 10, 10), (10, 10, 10, 11), (10, 10, 11, 12),  # episode 1 starts afresh
        (10, 11, 12, 13),
    ]  # fmt: skip
    assert batch.mask[:, 0].tolist() == [True, True, True, False, True, True, True, False]
    assert batch.terminated[:, 0].tolist() == [False, False, True, False] * 2
    assert batch.rewards[:, 0].tolist() == [1, 2, 3, 0, 1, 2, 3, 0]
    envs.close()


@pytest.mark.parametrize(
    ("given", "kept", "stored"),
    [(np.uint8, np.uint8, torch.uint8), (np.float64, np.float32, torch.float32),
     (np.float32, np.float32, torch.float32), (np.int64, np.float32, torch.float32),
     (np.bool_, np.float32, torch.float32)],
)  # fmt: skip
def test_only_uint8_observations_stay_bytes_in_every_store(given, kept, stored):
    """One rule (``encoders.storage_dtype``) for the rollout's storage and SAC's replay buffer:
    uint8 observations are kept as bytes, any other dtype becomes float32; the other fields keep
    theirs (rewards float32, integer actions as given)."""
    assert storage_dtype(given) == kept
    store = _Storage(2)
    store.put(obs=np.full(3, 7, given), rewards=np.float64(0.5), actions=np.int64(2))
    view = store.view()
    assert view["obs"].dtype == stored and view["obs"][0].tolist() == [1 if given is np.bool_
                                                                       else 7] * 3  # fmt: skip
    assert view["rewards"].dtype == torch.float32 and view["actions"].dtype == torch.int64
    buffer = ReplayBuffer(2, (3,), 1, obs_dtype=storage_dtype(given))
    assert buffer.tensors["obs"].dtype == buffer.tensors["next_obs"].dtype == stored
    assert buffer.tensors["rewards"].dtype == torch.float32


class Lives(gym.Env):
    """A scripted ALE stand-in: 2 lives; the script says, per step, (reward, life lost). The
    game is over when the lives run out. Action meanings as Breakout's."""

    observation_space = gym.spaces.Box(0, 255, (84, 84), np.uint8)
    action_space = gym.spaces.Discrete(4)

    def __init__(self, script):
        self.script, self.t, self.actions, self.resets = script, 0, [], 0
        self.ale = self

    def lives(self) -> int:
        return self._lives

    def get_action_meanings(self):
        return ["NOOP", "FIRE", "RIGHT", "LEFT"]

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._lives, self.resets = 2, self.resets + 1
        return np.zeros((84, 84), np.uint8), {}

    def step(self, action):
        self.actions.append(int(action))
        reward, lost = self.script[self.t % len(self.script)]
        self.t += 1
        self._lives -= lost
        return np.zeros((84, 84), np.uint8), reward, self._lives == 0, False, {}


def test_episodic_life_fire_reset_and_the_true_score():
    """Inside out as in ``atari.wrappers``: RecordEpisodeStatistics, EpisodicLife, FireReset,
    ClipReward. A lost life ends the training episode (terminated) but not the game; the
    reset after it takes a no-op, then FIRE and UP; the reported episode is the whole game,
    with its unclipped score; training rewards are clipped."""
    # per step: (reward, life lost); the reset steps (NOOP, FIRE, UP) consume script entries.
    script = [
        (0, 0),
        (0, 0),
        (5, 0),
        (0, 1),  # FIRE, UP, scores 5, loses a life
        (0, 0),
        (0, 0),
        (0, 0),
        (3, 0),
        (2, 1),
    ]  # no-op, FIRE, UP, 3, 2 and game over
    inner = Lives(script)

    def make():
        env = gym.wrappers.RecordEpisodeStatistics(inner)
        env = atari.FireReset(atari.EpisodicLife(env))
        return gym.wrappers.ClipReward(env, -1.0, 1.0)

    envs = gym.vector.SyncVectorEnv([make], autoreset_mode=AutoresetMode.NEXT_STEP)
    envs.unwrapped.metadata = {**envs.unwrapped.metadata, "pgrad_episode_statistics": True}
    cfg = resolve("ppo", "CartPole-v1", hidden_sizes=[8], n_steps=5, encoder="mlp")
    model = build_actor_critic(
        cfg, gym.spaces.Box(0, 255, (84, 84), np.uint8), envs.single_action_space
    )
    rollout = Rollout(envs, n_steps=5, seed=0)
    batch = rollout.collect(model)
    assert inner.actions[:2] == [1, 2]  # FIRE, UP at the first reset
    assert batch.rewards[:, 0].tolist() == [1, 0, 0, 1, 1]  # 5 -> 1; autoreset; 3 -> 1, 2 -> 1
    assert batch.terminated[:, 0].tolist() == [False, True, False, False, True]
    assert batch.mask[:, 0].tolist() == [True, True, False, True, True]
    assert inner.resets == 1  # the lost life did not reset the game (game over will, next step)
    assert inner.actions[4:7] == [0, 1, 2]  # after the lost life: NOOP, FIRE, UP
    assert batch.episode_returns.tolist() == [10.0]  # one game, 5 + 3 + 2, unclipped
    assert batch.episode_lengths.tolist() == [len(script)]  # every frame of the game
    envs.close()


@pytest.mark.parametrize("seed", [None, 3])
def test_a_seeded_reset_starts_a_new_game_even_after_a_lost_life(seed):
    """Autoreset after a lost life (no seed) continues the game with a no-op; a seeded reset
    (an evaluation's) starts a new one, and the whole-game score counts only that game."""
    # FIRE, UP, 4 and a life lost; then the reset's steps, 1, 2 and a life lost, a last life
    script = [(0, 0), (0, 0), (4, 1)] + [(0, 0)] * 3 + [(1, 0), (2, 1), (0, 0), (0, 0), (0, 1)]
    inner = Lives(script)
    env = atari.FireReset(atari.EpisodicLife(gym.wrappers.RecordEpisodeStatistics(inner)))
    env.reset(seed=0)  # FIRE, UP
    *_, terminated, _, _ = env.step(0)  # scores 4, loses a life
    assert terminated and inner.lives() == 1
    env.reset(seed=seed)
    new_game = seed is not None
    assert inner.resets == (2 if new_game else 1)
    assert inner.actions[3:] == ([1, 2] if new_game else [0, 1, 2])
    assert inner.lives() == (2 if new_game else 1)
    for _ in range(20):
        *_, info = env.step(0)
        if "episode" in info:
            break
    # the continued game ends at the second lost life; a new one has two lives to lose
    assert info["episode"]["r"] == (3 if new_game else 7)


def test_the_atari_chain_on_breakout():
    """The real thing, briefly: observations are 4 stacked 84x84 uint8 frames, training
    rewards are clipped, and the reported episodes are whole games."""
    pytest.importorskip("ale_py")
    pytest.importorskip("cv2")
    from pgrad.envs import make_vec_env

    torch.manual_seed(0)
    envs = make_vec_env("ALE/Breakout-v5", 2)
    assert envs.single_observation_space == IMAGE
    cfg = resolve("ppo", "ALE/Breakout-v5", n_steps=64)
    assert (cfg.n_envs, cfg.clip_range, cfg.entropy_coef, cfg.hidden_sizes) == (8, 0.1, 0.01, ())
    model = build_actor_critic(cfg, IMAGE, envs.single_action_space)
    rollout = Rollout(envs, n_steps=64, seed=0)
    rewards, returns = [], []
    for _ in range(6):
        batch = rollout.collect(model)
        rewards.append(batch.rewards.flatten())
        returns += batch.episode_returns.tolist()
    assert set(torch.cat(rewards).unique().tolist()) <= {0.0, 1.0}
    assert returns and all(r >= 0 for r in returns)
    envs.close()


@pytest.mark.parametrize("env_id", ["ALE/Breakout-v5", "BreakoutNoFrameskip-v4"])
def test_a_pickled_atari_vector_env_continues_the_same_games(env_id):
    """What a checkpoint saves (``train._env_blob``) and a resume loads: stepped with the same
    actions, the restored copy gives exactly what the original gives, through lost lives and
    game overs (sticky actions and no-op starts draw from the restored generators)."""
    pytest.importorskip("ale_py")
    pytest.importorskip("cv2")
    from pgrad.envs import make_vec_env
    from pgrad.train import _env_blob

    envs = make_vec_env(env_id, 2)
    envs.reset(seed=0)
    actions = np.random.default_rng(0).integers(0, 4, (700, 2))
    for action in actions[:100]:
        envs.step(action)
    restored = pickle.loads(_env_blob(envs))
    games = 0
    for action in actions[100:]:
        ours, theirs = envs.step(action), restored.step(action)
        for x, y in zip(ours[:4], theirs[:4], strict=True):
            assert np.array_equal(x, y)
        games += int(ours[4].get("_episode", np.zeros(2)).sum())
    assert games >= 2  # each env started a new game from a no-op start at least once
    envs.close()
    restored.close()


def test_a_cnn_policy_exports_to_onnx_with_parity(tmp_path):
    pytest.importorskip("onnxruntime")
    import onnxruntime

    from pgrad.agent import Agent
    from pgrad.export import export_agent

    torch.manual_seed(0)
    cfg = resolve("ppo", "CartPole-v1", hidden_sizes=[])
    model = build_actor_critic(cfg, IMAGE, gym.spaces.Discrete(4)).eval()
    agent = Agent(model, "ALE/Breakout-v5", "ppo", {"seed": 0}, 0, IMAGE, gym.spaces.Discrete(4))
    path = export_agent(agent, "onnx", tmp_path / "policy.onnx")
    obs = np.random.default_rng(0).integers(0, 256, (7, 4, 84, 84), dtype=np.uint8)
    session = onnxruntime.InferenceSession(str(path))
    assert session.get_inputs()[0].type == "tensor(uint8)"  # bytes in, as the env gives them
    got = session.run(None, {"obs": obs})[0]
    np.testing.assert_array_equal(got, agent.act(obs, deterministic=True))
    with torch.no_grad():
        logits = model.actor.logits(model.actor.encoder(torch.as_tensor(obs)))
    np.testing.assert_array_equal(got, logits.argmax(-1).numpy())


def test_an_atari_run_loads_evaluates_and_records_whole_games(tmp_path):
    """``pgrad.load`` builds the CNN for the preprocessed frames the run trained on (not the raw
    210x160 screen), and ``record`` plays whole games: the same game as the evaluation with the
    same seed, with the same true score, past every lost life."""
    pytest.importorskip("ale_py")
    pytest.importorskip("cv2")
    import pgrad
    from pgrad.envs import make_env
    from pgrad.record import frames

    run = pgrad.train(
        "ppo", "ALE/Breakout-v5", steps=256, seed=0, run_dir=tmp_path / "run", n_envs=2,
        n_steps=64, batch_size=64, eval_episodes=1, checkpoint_every=10**9,
    )  # fmt: skip
    agent = pgrad.load(run.path)
    assert agent.observation_space == IMAGE
    evaluated = agent.evaluate(episodes=1, seed=123)
    images, returns, fps = frames(run.path, episodes=1, seed=123)
    assert returns == [float(evaluated[0])]
    assert fps == 60 // 4  # real time: the console's 60 frames a second, 4 per agent step
    assert images[0].shape == (210, 160, 3)
    env = make_env("ALE/Breakout-v5")  # the first life alone, played the same way
    obs, _ = env.reset(seed=123)
    first_life, over = 0, False
    while not over:
        obs, _, terminated, truncated, _ = env.step(agent.act(obs, deterministic=True))
        first_life, over = first_life + 1, terminated or truncated
    env.close()
    assert len(images) > first_life + 1


SMALL = gym.spaces.Box(0, 255, (3, 36, 36), np.uint8)  # the smallest side the CNN takes


class Brightness(gym.Env):
    """A one-step pixel bandit: a dark or a bright frame (p = 1/2 each), two actions in [-1, 1];
    the reward is -(a_0 - t)^2 with t = -0.5 for dark and +0.5 for bright. Only the pixels say
    which frame it is."""

    observation_space = SMALL
    action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)

    def frame(self) -> np.ndarray:
        self.bright = bool(self.np_random.integers(2))
        return np.full(SMALL.shape, 230 if self.bright else 25, np.uint8)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.frame(), {}

    def step(self, action):
        target = 0.5 if self.bright else -0.5
        return self.frame(), -float((action[0] - target) ** 2), True, False, {}


def _by_hand(critics, obs: torch.Tensor, action: torch.Tensor) -> list[torch.Tensor]:
    """Q_j = W_2 relu(W_1 [phi(obs / 255), a] + b_1) + b_2, in float64, conv by conv."""
    x = obs.double() / 255
    for conv in (m for m in critics.encoder.convs if isinstance(m, torch.nn.Conv2d)):
        x = F.relu(F.conv2d(x, conv.weight.double(), conv.bias.double(), stride=conv.stride))
    linear = critics.encoder.linear
    x = F.relu(x.flatten(1) @ linear.weight.double().T + linear.bias.double())
    x = torch.cat([x, action.double()], -1)
    out = []
    for q in (critics.q1, critics.q2):
        first, last = (m for m in q if isinstance(m, torch.nn.Linear))
        h = F.relu(x @ first.weight.double().T + first.bias.double())
        out.append((h @ last.weight.double().T + last.bias.double()).squeeze(-1))
    return out


class BrightnessChoice(Brightness):
    """Brightness with two discrete actions: 1 is right on a bright frame, 0 on a dark one."""

    action_space = gym.spaces.Discrete(2)

    def step(self, action):
        return self.frame(), float(int(action) == self.bright), True, False, {}


def test_a_run_on_normalised_pixels_loads_the_network_it_trained(tmp_path):
    """With ``normalize_obs`` the CNN trained on standardised floats, which it takes as they
    are; ``pgrad.load`` must build it so, not divide them by 255 again (the scale is not in the
    state dict, so a wrong one loads silently). The loaded agent's actions are checked against
    the network run by hand on (obs - mean) / sqrt(var + 1e-8)."""
    import pgrad

    if "PixelChoice-v0" not in gym.registry:
        gym.register("PixelChoice-v0", entry_point=BrightnessChoice, max_episode_steps=1)
    pgrad.train(
        "ppo", "PixelChoice-v0", steps=128, seed=0, n_envs=2, n_steps=32, batch_size=32,
        n_epochs=1, normalize_obs=True, normalize_reward=False, hidden_sizes=[], threads=1,
        eval_episodes=1, run_dir=tmp_path / "r",
    )  # fmt: skip
    agent = pgrad.load(tmp_path / "r")
    obs = np.random.default_rng(0).integers(0, 256, (16, *SMALL.shape), dtype=np.uint8)
    mean, var = agent.normalization["obs_mean"], agent.normalization["obs_var"]
    z = ((torch.as_tensor(obs).double() - mean) / torch.sqrt(var + 1e-8)).float()
    cnn, x = agent.model.actor.encoder, z.double()
    for conv in (m for m in cnn.convs if isinstance(m, torch.nn.Conv2d)):
        x = F.relu(F.conv2d(x, conv.weight.double(), conv.bias.double(), stride=conv.stride))
    x = F.relu(x.flatten(1) @ cnn.linear.weight.double().T + cnn.linear.bias.double())
    with torch.no_grad():
        logits = agent.model.actor.logits(x.float())
        loaded = agent.model.actor.logits(cnn(z))  # what the agent computes from z
    torch.testing.assert_close(loaded, logits, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(agent.act(obs, deterministic=True), logits.argmax(-1).numpy())


def test_sac_critics_read_pixels_through_one_cnn_over_255():
    """On images both Q-functions share one Nature CNN of their own (the actor has another),
    the pixels are divided by 255 (a flat critic on raw bytes starts with |Q| in the hundreds),
    and ``encoder: mlp`` still flattens them."""
    from pgrad.algos.sac import SACConfig
    from pgrad.critics import SACModel

    torch.manual_seed(0)
    model = SACModel(SACConfig(hidden_sizes=(16,)), SMALL, Brightness.action_space)
    critics = model.critics
    assert isinstance(critics.encoder, NatureCNN) and isinstance(model.actor.encoder, NatureCNN)
    assert critics.encoder is not model.actor.encoder
    assert critics.encoder is not model.targets.encoder  # the targets have their own copy
    obs = torch.randint(0, 256, (5, *SMALL.shape), dtype=torch.uint8)
    action = torch.rand(5, 2) * 2 - 1
    q1, q2 = critics(obs, action)
    e1, e2 = _by_hand(critics, obs, action)
    torch.testing.assert_close(q1.double(), e1, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(q2.double(), e2, rtol=1e-5, atol=1e-5)
    assert q1.abs().max() < 10  # O(1) at the start, on bytes up to 255
    flat = SACModel(SACConfig(hidden_sizes=(16,), encoder="mlp"), SMALL, Brightness.action_space)
    assert isinstance(flat.critics.encoder, FlatEncoder)
    assert isinstance(flat.actor.encoder, FlatEncoder)


def test_sac_keeps_pixels_as_bytes_and_learns_from_them():
    """The replay buffer stores the frames as uint8, byte for byte; the critic loss trains the
    critics' CNN and not the actor's; and after 400 steps the deterministic action follows the
    frame's brightness (the optimum is a_0 = -0.5 dark, +0.5 bright; a policy blind to the
    pixels acts the same on both: 0.3 apart is ~5 times below seed 0's 1.5)."""
    from pgrad.algos.sac import SAC, SACConfig

    envs = gym.vector.SyncVectorEnv([Brightness], autoreset_mode=AutoresetMode.SAME_STEP)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # conv layers on tiny batches: threads only add contention
    try:
        torch.manual_seed(0)
        cfg = SACConfig(steps=400, hidden_sizes=(32,), batch_size=32, learning_starts=50,
                        learning_rate=1e-3, alpha=0.05)  # fmt: skip
        sac = SAC(cfg, envs, seed=0)
        buffer = sac.buffer
        assert buffer.tensors["obs"].dtype == buffer.tensors["next_obs"].dtype == torch.uint8
        actor_cnn = [p.detach().clone() for p in sac.model.actor.encoder.parameters()]
        critic_cnn = [p.detach().clone() for p in sac.model.critics.encoder.parameters()]
        while sac.steps < cfg.learning_starts - 1:  # random actions, no update yet
            sac.iterate()
        stored = buffer.tensors["obs"][: buffer.size]
        assert set(stored[:, 0, 0, 0].tolist()) == {25, 230}
        assert torch.equal(stored, stored[:, :1, :1, :1].expand_as(stored))  # whole frames

        batch = buffer.sample(32)
        q1, q2 = sac.model.critics(batch["obs"], batch["actions"])
        (q1 + q2).sum().backward()

        def grads(module):  # the parameters are views of one flat buffer (fast.FlatParameters)
            return [0.0 if p.grad is None else p.grad.abs().sum().item()
                    for p in module.parameters()]  # fmt: skip

        assert all(g > 0 for g in grads(sac.model.critics.encoder))
        assert not any(grads(sac.model.actor.encoder))
        sac.model.zero_grad()
        while sac.steps < cfg.steps:
            sac.iterate()
        for before, module in ((actor_cnn, sac.model.actor), (critic_cnn, sac.model.critics)):
            after = module.encoder.parameters()
            assert any(not torch.equal(b, p) for b, p in zip(before, after, strict=True))
        frames = torch.tensor(np.stack([np.full(SMALL.shape, v, np.uint8) for v in (25, 230)]))
        with torch.no_grad():
            dark, bright = sac.model.act(frames, deterministic=True)[:, 0].tolist()
        assert dark < 0 < bright and bright - dark > 0.3, (dark, bright)
    finally:
        torch.set_num_threads(threads)
        envs.close()


def test_a_cnn_sac_actor_exports_to_onnx_with_parity(tmp_path):
    """The exported graph takes the bytes and returns tanh(mu(s)) mapped to the bounds."""
    pytest.importorskip("onnxruntime")
    import onnxruntime

    from pgrad.agent import Agent
    from pgrad.algos.sac import SACConfig
    from pgrad.critics import SACModel
    from pgrad.export import export_agent

    torch.manual_seed(0)
    space = gym.spaces.Box(-2.0, 2.0, (2,), np.float32)
    model = SACModel(SACConfig(hidden_sizes=(16,)), SMALL, space).eval()
    agent = Agent(model, "Pixels-v0", "sac", {"seed": 0}, 0, SMALL, space)
    path = export_agent(agent, "onnx", tmp_path / "policy.onnx")
    obs = np.random.default_rng(0).integers(0, 256, (7, *SMALL.shape), dtype=np.uint8)
    got = onnxruntime.InferenceSession(str(path)).run(None, {"obs": obs})[0]
    with torch.no_grad():
        actor = model.actor
        mean = actor.mean(actor.body(actor.encoder(torch.as_tensor(obs))))
    np.testing.assert_allclose(got, 2.0 * np.tanh(mean.numpy()), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got, agent.act(obs, deterministic=True), rtol=1e-5, atol=1e-6)
