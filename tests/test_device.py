"""``device``: the names pgrad accepts, the one-line error for a GPU this machine lacks, a CPU copy
for acting that follows the learner, batches and replay buffers that move, and a checkpoint
written on a CUDA device that loads, evaluates and resumes on a CPU-only machine.

CI has no GPU, so the CUDA device is mocked where a test needs one: checkpoints are written with
CUDA location tags (as ``torch.save`` writes a CUDA tensor's storage), and ``meta`` tensors
stand in for tensors on another device."""

import json
import sys
from unittest import mock

import gymnasium as gym
import numpy as np
import pytest
import torch
import yaml
from cli_runner import run_cli

import pgrad
from pgrad import device, runs
from pgrad.cli import main
from pgrad.errors import PgradError
from pgrad.fast import NumpyPolicy
from pgrad.policies import build_actor_critic
from pgrad.replay import ReplayBuffer
from pgrad.rollout import Batch
from pgrad.train import resolve

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")


def test_names_and_the_auto_rule(monkeypatch):
    assert device.resolve("cpu") == torch.device("cpu")
    assert device.resolve("auto") == torch.device("cpu")  # MLP policies learn on the CPU
    monkeypatch.setattr(device, "cuda_count", lambda: 2)
    assert device.resolve("auto") == torch.device("cpu")
    assert device.resolve("auto", auto="accelerator") == torch.device("cuda")
    assert device.resolve("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(PgradError, match="CUDA devices 0 to 1 only"):
        device.resolve("cuda:2")
    monkeypatch.setattr(device, "cuda_count", lambda: 0)
    assert device.resolve("auto", auto="accelerator") == torch.device("cpu")
    with pytest.raises(PgradError, match="device cuda: this machine has no CUDA device"):
        device.resolve("cuda")
    for bad in ("gpu", "cuda:", "cuda:x", "CPU", "mps"):
        with pytest.raises(PgradError, match="device must be auto, cpu, cuda or cuda:N"):
            device.resolve(bad)
    cfg = resolve("ppo", "CartPole-v1")
    image = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    assert device.preferred(build_actor_critic(cfg, *_cartpole_spaces())) == "cpu"
    assert device.preferred(build_actor_critic(cfg, image, gym.spaces.Discrete(4))) == "accelerator"


@no_cuda
@pytest.mark.parametrize(
    "args",
    [
        ["train", "ppo", "--device", "cuda"],
        ["train", "sac", "--env", "Pendulum-v1", "--device", "cuda:0"],
        ["train", "a2c", "--set", "device=cuda"],
        ["rlhf", "train", "grpo", "--device", "cuda"],
    ],
)
def test_cuda_without_a_gpu_is_one_line_and_writes_nothing(monkeypatch, capsys, tmp_path, args):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(monkeypatch, capsys, *args)
    assert code == 2
    lines = err.strip().splitlines()
    assert lines == [lines[0]] and "this machine has no CUDA device; use --device cpu" in lines[0]
    assert list(tmp_path.iterdir()) == []


def test_bad_device_names_are_config_errors(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(monkeypatch, capsys, "train", "ppo", "--device", "gpu")
    assert code == 2 and "device must be auto, cpu, cuda or cuda:N, got 'gpu'" in err
    code, _, err = run_cli(monkeypatch, capsys, "train", "a3c", "--set", "device=cuda:0")
    assert code == 2 and "a3c's workers share theta in CPU memory" in err
    assert list(tmp_path.iterdir()) == []


def test_the_acting_copy_follows_the_learner():
    """Forced to copy (as for a learner on a GPU), the CPU copy acts exactly as the model does,
    keeps its parameter storage (so the fast path's NumPy views stay valid), and takes every new
    value of theta."""
    cfg = resolve("ppo", "CartPole-v1")
    model = build_actor_critic(cfg, *_cartpole_spaces())
    acting = device.ActingCopy(model, always=True)
    copy = acting()
    assert copy is not model
    pointers = [p.data_ptr() for p in copy.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    assert acting() is copy and [p.data_ptr() for p in copy.parameters()] == pointers
    for a, b in zip(copy.parameters(), model.parameters(), strict=True):
        assert torch.equal(a, b)
    obs = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)
    fast, direct = NumpyPolicy(copy, np.random.default_rng(1)), NumpyPolicy(model, None)
    np.testing.assert_array_equal(fast(obs, True)[0], direct(obs, True)[0])
    assert device.ActingCopy(model)() is model  # a learner on the CPU acts itself


def test_a_batch_moves_its_tensors_only():
    T, N = 3, 2
    flags = torch.zeros(T, N, dtype=torch.bool)
    batch = Batch(
        obs=torch.zeros(T, N, 4), actions=torch.zeros(T, N, dtype=torch.long),
        log_probs=torch.zeros(T, N), rewards=torch.ones(T, N), terminated=flags, truncated=flags,
        values=torch.zeros(T, N), next_values=torch.zeros(T, N), mask=~flags,
        episode_returns=np.array([1.0]), episode_lengths=np.array([3]),
    )  # fmt: skip
    assert batch.to(torch.device("cpu")) is batch
    moved = batch.to(torch.device("meta"))
    tensors = [v for v in vars(moved).values() if isinstance(v, torch.Tensor)]
    assert len(tensors) == 9 and all(t.device.type == "meta" for t in tensors)
    assert moved.rewards.shape == (T, N) and moved.mask.dtype == torch.bool
    assert moved.episode_returns is batch.episode_returns


def test_the_replay_buffer_on_another_device_stores_and_samples_the_same():
    """The buffer's tensors on ``meta`` take the same writes and the same (CPU-generated) sample
    indices as on the CPU; shapes, dtypes and devices checked, values on the CPU."""
    rng = np.random.default_rng(0)
    rows = {"obs": rng.normal(size=(5, 3)), "actions": rng.normal(size=(5, 2)),
            "rewards": rng.normal(size=5), "next_obs": rng.normal(size=(5, 3)),
            "terminated": np.array([0, 0, 1, 0, 0.0])}  # fmt: skip
    cpu, meta = ReplayBuffer(4, (3,), 2), ReplayBuffer(4, (3,), 2, "meta")
    for buffer in (cpu, meta):
        buffer.add(**rows)  # 5 rows into 4 slots: the first is overwritten
    assert (cpu.size, cpu.pos) == (meta.size, meta.pos) == (4, 1)
    np.testing.assert_allclose(cpu.arrays["rewards"], rows["rewards"][[4, 1, 2, 3]], rtol=1e-6)
    a = cpu.sample(7, torch.Generator().manual_seed(3))
    b = meta.sample(7, torch.Generator().manual_seed(3))
    for k in ReplayBuffer.FIELDS:
        assert b[k].device.type == "meta" and b[k].shape == a[k].shape and b[k].dtype == a[k].dtype


@no_cuda
@pytest.mark.parametrize("algo, env", [("ppo", "CartPole-v1"), ("sac", "Pendulum-v1")])
def test_a_cuda_checkpoint_loads_evaluates_and_resumes_on_the_cpu(
    monkeypatch, capsys, tmp_path, algo, env
):
    """A run whose config says cuda and whose checkpoint holds CUDA-tagged storages (what
    ``torch.save`` writes on a GPU): ``pgrad.load``, ``pgrad eval`` and a resume with
    ``--device cpu`` work on this CPU-only machine; a resume on the saved device is the one-line
    error."""
    steps = {"ppo": 2048, "sac": 300}[algo]
    sets = {"sac": {"learning_starts": 100, "log_every": 100}}.get(algo, {})
    run = pgrad.train(algo, env, steps=steps, seed=0, run_dir=tmp_path / "run", **sets)
    path = runs.checkpoints(run.path)[-1]
    state = torch.load(path, map_location="cpu", weights_only=True)
    with mock.patch("torch.serialization.location_tag", lambda storage: "cuda:0"):
        torch.save(state, path)
    with pytest.raises(RuntimeError, match="CUDA"):  # the mock is what a GPU writes
        torch.load(path, weights_only=True)
    config = yaml.safe_load((run.path / "config.yaml").read_text())
    (run.path / "config.yaml").write_text(yaml.safe_dump({**config, "device": "cuda"}))

    agent = pgrad.load(run.path)
    assert all(p.device.type == "cpu" for p in agent.model.parameters())
    returns = agent.evaluate(episodes=2, seed=0)
    assert len(returns) == 2 and np.isfinite(returns).all()
    monkeypatch.setattr(sys, "argv", ["pgrad", "eval", str(run.path), "--episodes", "2", "--json"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code in (0, None)
    assert json.loads(capsys.readouterr().out)["episodes"] == 2

    code, _, err = run_cli(monkeypatch, capsys, "train", "--resume", str(run.path), "--steps",
                        str(2 * steps))  # fmt: skip
    assert code == 2 and "device cuda: this machine has no CUDA device" in err
    resumed = pgrad.train(resume=run.path, steps=2 * steps, device="cpu")
    assert resumed.summary["steps"] >= 2 * steps


def _cartpole_spaces():
    env = gym.make("CartPole-v1")
    try:
        return env.observation_space, env.action_space
    finally:
        env.close()
