"""The Ray backend on a local Ray instance (2 CPUs, no dashboard, no usage stats, small object
store; started once for this module)."""

from __future__ import annotations

import os

import pytest
import torch

ray = pytest.importorskip("ray")

from pgrad import launch  # noqa: E402
from pgrad.agent import evaluate  # noqa: E402
from pgrad.algos.a2c import A2C, A2CConfig  # noqa: E402
from pgrad.algos.a3c import A3C, A3CConfig  # noqa: E402
from pgrad.algos.ppo import PPO, PPOConfig  # noqa: E402
from pgrad.envs import make_vec_env  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=80 * 1024**2,
        log_to_driver=False,
        configure_logging=False,
    )
    yield
    ray.shutdown()


def _pair(cls, config_cls, **settings):
    """The same algorithm twice from the same seed: on Ray workers and in one process."""
    envs = make_vec_env("CartPole-v1", 1)
    torch.manual_seed(0)
    config = config_cls(backend="ray", workers=2, n_envs=2, **settings)
    distributed = launch.algorithm(cls.__name__.lower(), config, envs, 0)
    torch.manual_seed(0)
    local = cls(config_cls(n_envs=4, **settings), envs, 0)
    return distributed, local


@pytest.mark.parametrize(
    ("cls", "config_cls", "settings"),
    [(A2C, A2CConfig, {"n_steps": 5}), (PPO, PPOConfig, {"n_steps": 16, "batch_size": 16})],
)
def test_synchronous_mode_gives_the_single_process_update_on_the_same_data(
    cls, config_cls, settings
):
    distributed, local = _pair(cls, config_cls, **settings)
    try:
        torch.testing.assert_close(distributed.flat.param, local.flat.param, rtol=0, atol=0)
        batch = distributed.rollout.collect(distributed.model)
        # The workers acted with the learner's weights: their log-probs and values are the
        # learner's own on the same observations and actions.
        assert batch.obs.shape[:2] == (settings["n_steps"], 4)
        obs, actions, log_probs, values = (
            x.flatten(0, 1) for x in (batch.obs, batch.actions, batch.log_probs, batch.values)
        )
        with torch.no_grad():
            dist, own_values = distributed.model(obs)
        torch.testing.assert_close(dist.log_prob(actions), log_probs)
        torch.testing.assert_close(own_values, values)
        torch.manual_seed(1)  # PPO's minibatch shuffle
        distributed.update(batch)
        torch.manual_seed(1)
        local.update(batch)
        torch.testing.assert_close(distributed.flat.param, local.flat.param, rtol=0, atol=0)
        second = distributed.rollout.collect(distributed.model)  # fresh weights broadcast
        with torch.no_grad():
            dist, _ = distributed.model(second.obs.flatten(0, 1))
        log_probs = dist.log_prob(second.actions.flatten(0, 1))
        torch.testing.assert_close(log_probs, second.log_probs.flatten(0, 1))
    finally:
        distributed.close()


def _a3c(steps: int) -> A3C:
    config = A3CConfig(backend="ray", workers=2, n_envs=4, steps=steps, seed=0)
    return launch.algorithm("a3c", config, make_vec_env("CartPole-v1", 1), 0)


def test_asynchronous_mode_trains_cartpole():
    """Threshold: the untrained policy's episodes last ~22 steps (acting stochastically), and
    with the policy-gradient sign flipped, ~9. After 30k steps of async A2C (8 envs x 5 steps),
    20 sampled-action episodes averaged 85-438 over 8 local runs; applying zero gradients left
    them at 21-26 and flipping the advantage's sign at 9.5. The training episodes' own returns
    are not used: gradients arrive in the scheduler's order, and once the policy is good few
    episodes end in a short window (a CI run once averaged 57 over the last 8)."""
    algo = _a3c(30_000)
    rows = []
    try:
        while algo.steps < 30_000:
            rows.append(algo.iterate())
    finally:
        algo.close()
    lags = [r["policy_lag"] for r in rows]
    assert min(lags) == 0 and max(lags) >= 1  # two workers: some gradients are one version old
    assert algo.transport.version == sum(1 for r in rows if r["grad_norm"] == r["grad_norm"])
    returns = evaluate(algo.model, "CartPole-v1", episodes=30, seed=123, deterministic=False)
    assert returns.mean() > 45


def test_a_killed_worker_is_replaced_and_training_goes_on():
    algo = _a3c(10**9)
    try:
        for _ in range(20):
            algo.iterate()
        workers = algo.transport.workers
        assert workers is not None
        victim = workers.actors[0]
        pid = ray.get(victim.pid.remote())
        ray.kill(victim, no_restart=True)
        steps = algo.steps
        for _ in range(40):
            row = algo.iterate()
        assert row["workers_replaced"] == 1.0
        assert algo.steps > steps
        assert ray.get(workers.actors[0].pid.remote()) != pid
    finally:
        algo.close()


def test_a_resumed_ray_rollout_does_not_replay_the_runs_first_episodes():
    """Same weights, same run seed: a fresh RayRollout repeats the first batch exactly (so the
    comparison can fail), while one resumed 5 rounds in starts from other states, on workers
    seeded by ``worker_seed(seed, rank, 5)``."""
    from pgrad.distributed import worker_seed
    from pgrad.distributed.ray_backend import RayRollout

    config = PPOConfig(backend="ray", workers=2, n_envs=2, n_steps=8)
    envs = make_vec_env("CartPole-v1", 1)
    torch.manual_seed(0)
    model = PPO(PPOConfig(n_envs=4, n_steps=8), envs, 0).model
    first = []
    for resumed_at in (0, 0, 5):
        rollout = RayRollout(config, "CartPole-v1", 0)
        try:
            rollout.load_state({"rounds": resumed_at} if resumed_at else {}, envs, False)
            first.append(rollout.collect(model).obs[0])
            expected = [worker_seed(0, rank, resumed_at) for rank in range(2)]
            assert rollout.workers.seeds[-2:] == expected
            assert rollout.state() == {"rounds": resumed_at + 1}
        finally:
            rollout.close()
    assert torch.equal(first[0], first[1])
    assert not torch.isclose(first[0], first[2]).any()


def test_an_unreachable_or_malformed_cluster_address_is_a_one_line_error():
    from pgrad.distributed.ray_backend import _check_reachable
    from pgrad.errors import PgradError

    with pytest.raises(PgradError, match=r"cannot reach the Ray cluster at '127\.0\.0\.1:1'"):
        _check_reachable("127.0.0.1:1", timeout=2.0)
    with pytest.raises(PgradError, match="not HOST:PORT"):
        _check_reachable("headnode")


@pytest.mark.parametrize("algo", ["a2c", "a3c"])
def test_ray_runs_write_a_run_directory_and_resume(tmp_path, algo):
    import pgrad

    settings = {"backend": "ray", "workers": 2, "n_envs": 2, "eval_episodes": 1}
    run = pgrad.train(algo, "CartPole-v1", steps=1000, run_dir=tmp_path / "r", **settings)
    assert run.summary["steps"] >= 1000 and (tmp_path / "r" / "checkpoints").is_dir()
    resumed = pgrad.train(resume=tmp_path / "r", steps=2000)
    assert resumed.summary["steps"] >= 2000
    steps = [r["step"] for r in resumed.metrics()]
    assert steps == sorted(steps) and steps[-1] >= 2000
