"""Exported policies (torch.export, ONNX) act exactly like ``Agent.act(deterministic=True)``."""

import gymnasium as gym
import numpy as np
import pytest
import torch

import pgrad
from pgrad.agent import Agent, load
from pgrad.cli import app
from pgrad.export import export, export_agent
from pgrad.policies import make_policy

RUNS = {
    "categorical": ("ppo", "CartPole-v1", {}),
    "gaussian-normalised-obs": ("ppo", "Pendulum-v1", {"normalize_obs": True}),
    "squashed-state-std": ("a2c", "Pendulum-v1", {"squash": "tanh", "std": "state"}),
    "gsde": ("a2c", "Pendulum-v1", {"std": "gsde"}),
    "discrete-obs": ("reinforce", "FrozenLake-v1", {}),
    "sac": ("sac", "Pendulum-v1", {"hidden_sizes": [32, 32], "learning_starts": 1000}),
    "sac-gsde": (
        "sac",
        "Pendulum-v1",
        {"hidden_sizes": [32, 32], "learning_starts": 1000, "std": "gsde", "log_std_init": -2.0},
    ),
}


def _observations(space: gym.Space, n: int = 1000) -> np.ndarray:
    if isinstance(space, gym.spaces.Discrete):
        return np.random.default_rng(0).integers(0, space.n, n)
    # Wider than typical observations, so clipping and saturation are exercised too.
    return np.random.default_rng(0).uniform(-3, 3, (n, *space.shape)).astype(np.float32)


def _assert_exports_match(agent: Agent, tmp_path) -> None:
    """The .pt2 program and the ONNX graph give ``agent.act``'s actions, for 1 and 1000 obs."""
    ort = pytest.importorskip("onnxruntime")
    program = torch.export.load(export_agent(agent, "pt2", tmp_path / "p.pt2")).module()
    onnx = export_agent(agent, "onnx", tmp_path / "p.onnx")
    session = ort.InferenceSession(onnx.read_bytes())  # one file: no external weights
    observations = _observations(agent.observation_space)
    for obs in (observations[:1], observations):
        expected = agent.act(obs, deterministic=True)
        for got in (program(torch.as_tensor(obs)).numpy(), session.run(None, {"obs": obs})[0]):
            assert got.shape == expected.shape
            assert np.allclose(got, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("case", list(RUNS))
def test_exports_match_agent_act(tmp_path, case):
    algo, env, overrides = RUNS[case]
    run = pgrad.train(
        algo, env, steps=2000, seed=0, run_dir=tmp_path / "r", eval_episodes=1, **overrides
    )
    _assert_exports_match(load(run.path), tmp_path)


def test_multi_categorical_export_matches_agent_act(tmp_path):
    torch.manual_seed(0)
    obs_space = gym.spaces.Box(-1, 1, (3,), np.float32)
    actions = gym.spaces.MultiDiscrete([2, 3])
    stats = {"obs_mean": torch.randn(3).double(), "obs_var": torch.rand(3).double() + 0.5}
    agent = Agent(
        make_policy(obs_space, actions).eval(), "none", "ppo", {}, 0, obs_space, actions, stats
    )
    _assert_exports_match(agent, tmp_path)


def test_export_cli_writes_the_file_and_rejects_unknown_formats(tmp_path):
    from typer.testing import CliRunner

    run = pgrad.train("ppo", "CartPole-v1", steps=1000, run_dir=tmp_path / "r", eval_episodes=1)
    args = ["export", str(run.path), "--format", "pt2", "--out", str(tmp_path / "p.pt2")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "p.pt2").stat().st_size > 0
    with pytest.warns(FutureWarning, match="'torchscript' is deprecated"):
        assert export(run.path, "torchscript") == run.path / "policy.pt2"  # type: ignore[arg-type]
    with pytest.raises(pgrad.PgradError, match="unknown export format 'tflite'"):
        export(run.path, "tflite")  # type: ignore[arg-type]


@pytest.mark.parametrize("suffix", [".gif", ".mp4"])
def test_record_renders_the_trained_policy(tmp_path, suffix):
    if suffix == ".mp4":
        pytest.importorskip("moviepy")
    from PIL import Image

    from pgrad.record import frames, record

    run = pgrad.train("ppo", "CartPole-v1", steps=1000, run_dir=tmp_path / "r", eval_episodes=1)
    out, returns = record(run.path, tmp_path / f"video{suffix}", episodes=2)
    assert len(returns) == 2 and all(r >= 1 for r in returns)
    assert out.stat().st_size > 1000
    if suffix == ".gif":
        with Image.open(out) as gif:  # (Pillow merges identical consecutive frames)
            assert 10 < gif.n_frames <= sum(returns) + 2
            assert gif.size == (600, 400)
        images, again, fps = frames(run.path, episodes=2)
        assert again == returns and fps == 50
        assert len(images) == sum(returns) + 2  # CartPole: reward 1 per step, plus the resets
        upper, _ = record(run.path, tmp_path / "VIDEO.GIF", episodes=1)  # any case, as plots
        with Image.open(upper) as gif:
            assert gif.format == "GIF"
    with pytest.raises(pgrad.PgradError, match=r"expected a file ending in \.gif or \.mp4"):
        record(run.path, tmp_path / "video.avi")
    (tmp_path / "folder.gif").mkdir()
    with pytest.raises(pgrad.PgradError, match="it is a folder; expected a file path"):
        record(run.path, tmp_path / "folder.gif")
