"""Exported policies (TorchScript, ONNX) act exactly like ``Agent.act(deterministic=True)``."""

import gymnasium as gym
import numpy as np
import pytest
import torch

import pgrad
from pgrad.agent import load
from pgrad.cli import app
from pgrad.export import export

RUNS = {
    "categorical": ("ppo", "CartPole-v1", {}),
    "gaussian-normalised-obs": ("ppo", "Pendulum-v1", {"normalize_obs": True}),
    "squashed-state-std": ("a2c", "Pendulum-v1", {"squash": "tanh", "std": "state"}),
    "discrete-obs": ("reinforce", "FrozenLake-v1", {}),
    "sac": ("sac", "Pendulum-v1", {"hidden_sizes": [32, 32], "learning_starts": 1000}),
}


def _observations(space: gym.Space, n: int = 1000) -> np.ndarray:
    if isinstance(space, gym.spaces.Discrete):
        return np.random.default_rng(0).integers(0, space.n, n)
    # Wider than typical observations, so clipping and saturation are exercised too.
    return np.random.default_rng(0).uniform(-3, 3, (n, *space.shape)).astype(np.float32)


@pytest.mark.parametrize("case", list(RUNS))
def test_exports_match_agent_act_on_1000_observations(tmp_path, case):
    ort = pytest.importorskip("onnxruntime")
    algo, env, overrides = RUNS[case]
    run = pgrad.train(
        algo, env, steps=2000, seed=0, run_dir=tmp_path / "r", eval_episodes=1, **overrides
    )
    agent = load(run.path)
    obs = _observations(agent.observation_space)
    expected = agent.act(obs, deterministic=True)
    scripted = torch.jit.load(str(export(run.path, "torchscript")))
    got = scripted(torch.as_tensor(obs)).numpy()
    assert got.shape == expected.shape
    assert np.allclose(got, expected, atol=1e-5, rtol=0)
    session = ort.InferenceSession(str(export(run.path, "onnx", tmp_path / "p.onnx")))
    got = session.run(None, {"obs": obs})[0]
    assert got.shape == expected.shape
    assert np.allclose(got, expected, atol=1e-5, rtol=0)


def test_export_cli_writes_the_file_and_rejects_unknown_formats(tmp_path):
    from typer.testing import CliRunner

    run = pgrad.train("ppo", "CartPole-v1", steps=1000, run_dir=tmp_path / "r", eval_episodes=1)
    result = CliRunner().invoke(app, ["export", str(run.path), "--out", str(tmp_path / "p.pt")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "p.pt").stat().st_size > 0
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
    with pytest.raises(pgrad.PgradError, match=r"expected a file ending in \.gif or \.mp4"):
        record(run.path, tmp_path / "video.avi")
