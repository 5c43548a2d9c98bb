"""The `pgrad` command: bad input gives one line and exit code 2; the happy paths work."""

import json
import sys

import pytest
from cli_runner import HANG_GUARD_S, run_cli


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "reinforc"], "unknown algorithm 'reinforc'; did you mean 'reinforce'?"),
        (["train", "reinforce", "--env", "CartPol-v1"], "unknown env id 'CartPol-v1'"),
        (["train", "reinforce", "--set", "learing_rate=0.1"], "did you mean 'learning_rate'?"),
        (["train", "reinforce", "--set", "gamma=abc"], "gamma expects a number, got 'abc'"),
        (["train", "reinforce", "--set", "gamma=1.5"], "gamma must be in [0, 1], got 1.5"),
        (["train", "reinforce", "--set", "n_envs=0"], "n_envs must be >= 1, got 0"),
        (["train", "reinforce", "--set", "learning_rate=-1"], "learning_rate must be > 0"),
        (["train", "reinforce", "--set", "normalize_advantage=maybe"], "expects true or false"),
        (["train", "reinforce", "--set", "activation=swish"], "activation must be one of"),
        (["train", "reinforce", "--set", "gamma"], "--set expects key=value"),
        (["train", "reinforce", "--config", "/nonexistent.yaml"], "cannot read config file"),
        (["eval", "/nonexistent/run"], "run directory '/nonexistent/run' does not exist"),
        (["plot", "/nonexistent/run"], "does not exist"),
        (["algos", "ppo2"], "unknown algorithm 'ppo2'"),
        (["train", "ppo", "--set", "gae_lambda=1.2"], "gae_lambda must be in [0, 1], got 1.2"),
        (["train", "a2c", "--set", "n_steps=0"], "n_steps must be >= 1, got 0"),
        (["train", "ppo", "--run-dir", "/proc/pgrad-run"], "cannot write run directory"),
        (["train", "--resume", "/nonexistent/run"], "'/nonexistent/run' does not exist"),
        (["train", "--resume", "/nonexistent/run", "--set", "gamma=0.9"], "takes only --steps"),
        (["train"], "train needs an algorithm (see `pgrad algos`), or --resume RUN_DIR"),
        (["export", "/nonexistent/run"], "does not exist"),
        (["record", "/nonexistent/run"], "does not exist"),
        (["report", "/nonexistent/run"], "does not exist"),
        (["train", "--resume", sys.executable], "is a file, not a run directory"),
        (["train", "ppo", "--steps", "abc"], "Invalid value for '--steps'"),
        (["train", "ppo", "--steps", "abc"], "got 'abc'"),
        (["eval", "/nonexistent/run", "--episodes", "0"], "'--episodes'"),
        (["eval", "/nonexistent/run", "--seed", "-1"], "got '-1'"),
        (["lab", "rps", "--seed", "-1"], "'--seed'"),
        (["rlhf", "sft", "--seed", "-1"], "'--seed'"),
        (["rlhf", "sft", "--set", "seed=-1"], "seed must be >= 0, got -1"),
        (["rlhf", "train", "rloo", "--set", "nosuch=1"], "its keys: "),
        (["algos", "rlhf", "rloo"], "unexpected extra argument"),
        (["rlhf", "reward"], "Missing option '--policy'"),
        (["train", "ppo", "--env", ":"], "env ':': '' is not a module name"),
        (["train", "ppo", "--env", ".rel:Foo-v0"], "'.rel' is not a module name"),
        (["rlhf", "train", "rloo", "--reward", ".x:f"], "'.x' is not a module name"),
        (["train", "ppo", "--set", "hidden_sizes=[1,"], "expects a list of int, got '[1,'"),
    ],
)
def test_bad_input_is_one_line_with_exit_code_2(monkeypatch, capsys, tmp_path, args, message):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(monkeypatch, capsys, *args)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert message in lines[0]
    assert not (tmp_path / "runs").exists()  # nothing written half-way


def test_corrupt_run_directories_are_named(monkeypatch, capsys, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run_cli(monkeypatch, capsys, "eval", str(empty))
    assert code == 2 and "not a pgrad run directory (no config.yaml)" in err
    (empty / "config.yaml").write_text(":: not yaml [")
    code, _, err = run_cli(monkeypatch, capsys, "eval", str(empty))
    assert code == 2 and "config.yaml' is corrupt" in err


def test_train_eval_plot_and_algos(monkeypatch, capsys, tmp_path):
    run = tmp_path / "run"
    code, out, _ = run_cli(
        monkeypatch, capsys,
        "train", "reinforce", "--env", "CartPole-v1", "--steps", "1500", "--seed", "3",
        "--run-dir", str(run), "--set", "eval_episodes=2", "--no-progress",
    )  # fmt: skip
    assert code == 0
    assert "evaluation return" in out
    for name in ["config.yaml", "metrics.csv", "summary.json", "learning_curve.png"]:
        assert (run / name).is_file(), name
    assert list((run / "checkpoints").glob("step-*.pt"))
    assert list(run.glob("events.out.tfevents.*"))

    code, out, _ = run_cli(monkeypatch, capsys, "eval", str(run), "--episodes", "3", "--json")
    result = json.loads(out)
    assert code == 0 and result["episodes"] == 3 and len(result["returns"]) == 3

    code, _, err = run_cli(
        monkeypatch, capsys, "train", "reinforce", "--steps", "100", "--run-dir", str(run)
    )
    assert code == 2 and "already exists and is not empty" in err

    png = tmp_path / "curve.png"
    code, _, _ = run_cli(monkeypatch, capsys, "plot", str(run), str(run), "--out", str(png))
    assert code == 0 and png.stat().st_size > 1000
    code, _, err = run_cli(
        monkeypatch, capsys, "plot", str(run), "--metric", "nope", "--out", str(png)
    )
    assert code == 2 and "metric 'nope' is not in" in err

    code, out, _ = run_cli(monkeypatch, capsys, "algos")
    assert code == 0 and "reinforce_baseline" in out
    code, out, _ = run_cli(monkeypatch, capsys, "algos", "reinforce_baseline")
    assert code == 0 and "episodes_per_env" in out and "learning_rate" in out


def test_config_file_and_set_precedence(monkeypatch, capsys, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("learning_rate: 0.02\ngamma: 0.5\nhidden_sizes: [16]\n")
    run = tmp_path / "run"
    code, _, _ = run_cli(
        monkeypatch, capsys,
        "train", "reinforce", "--steps", "200", "--config", str(config), "--set", "gamma=0.9",
        "--set", "eval_episodes=1", "--run-dir", str(run), "--no-progress",
    )  # fmt: skip
    assert code == 0
    import yaml

    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert resolved["learning_rate"] == 0.02 and resolved["gamma"] == 0.9
    assert resolved["hidden_sizes"] == [16] and resolved["steps"] == 200
    assert resolved["algo"] == "reinforce" and resolved["env"] == "CartPole-v1"


CHAIN_ENV = '''
import gymnasium as gym
import numpy as np


class Chain(gym.Env):
    """Walk right along 4 cells; reward 1 on reaching the end."""

    observation_space = gym.spaces.Box(0.0, 1.0, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.cell = 0
        return np.zeros(1, np.float32), {}

    def step(self, action):
        self.cell = max(0, self.cell + (1 if action == 1 else -1))
        done = self.cell == 3
        return np.array([self.cell / 3], np.float32), float(done), done, False, {}


gym.register("Chain-v0", entry_point=Chain, max_episode_steps=20)
'''


def test_a_custom_env_module_in_the_working_directory_is_found(tmp_path):
    """``--env module:EnvId`` through the installed console script, run where ``module.py``
    lies, with no PYTHONPATH: the module is imported as ``python -m`` would find it."""
    import os
    import subprocess
    from pathlib import Path

    (tmp_path / "myenvs.py").write_text(CHAIN_ENV)
    script = Path(sys.executable).with_name("pgrad")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

    def pgrad(*args):
        return subprocess.run([str(script), *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=HANG_GUARD_S)  # fmt: skip

    train = pgrad("train", "reinforce", "--env", "myenvs:Chain-v0", "--steps", "400",
                  "--run-dir", "run")  # fmt: skip
    assert train.returncode == 0, train.stderr
    evaluation = pgrad("eval", "run", "--episodes", "2", "--json")
    assert evaluation.returncode == 0, evaluation.stderr
    assert json.loads(evaluation.stdout)["episodes"] == 2


def test_train_resume_names_the_runs_algorithm_and_env(monkeypatch, capsys, tmp_path):
    run = tmp_path / "r"
    args = ["--steps", "600", "--run-dir", str(run), "--set", "eval_episodes=1"]
    code, _, _ = run_cli(monkeypatch, capsys, "train", "reinforce", "--env", "Acrobot-v1", *args)
    assert code == 0
    code, out, _ = run_cli(monkeypatch, capsys, "train", "--resume", str(run), "--steps", "8000")
    assert code == 0 and "reinforce on Acrobot-v1: evaluation return" in " ".join(out.split())


def test_a_resume_below_the_steps_done_is_one_line_and_changes_nothing(
    monkeypatch, capsys, tmp_path
):
    """SAC's replay buffer is sized by the budget: a smaller one could not hold what is saved."""
    run = tmp_path / "r"
    args = ["--steps", "300", "--run-dir", str(run), "--set", "learning_starts=100",
            "--set", "hidden_sizes=[8]", "--set", "eval_episodes=1"]  # fmt: skip
    code, _, _ = run_cli(monkeypatch, capsys, "train", "sac", "--env", "Pendulum-v1", *args)
    assert code == 0
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    code, _, err = run_cli(monkeypatch, capsys, "train", "--resume", str(run), "--steps", "200")
    assert code == 2
    assert err.strip() == (
        "error: steps 200 is below the 300 this run has done; resume takes a larger budget, "
        "or none to finish the run's own"
    )
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_bad_output_paths_are_one_line_and_write_nothing(monkeypatch, capsys, tmp_path):
    run = tmp_path / "run"
    code, _, _ = run_cli(monkeypatch, capsys, "train", "reinforce", "--steps", "300",
                         "--run-dir", str(run), "--set", "eval_episodes=1")  # fmt: skip
    assert code == 0
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a-file.txt").write_text("")
    (tmp_path / "a-folder").mkdir()
    cases = [
        (["export", str(run), "--out", "policy.txt"], "expected a file ending in .pt2"),
        (["export", str(run), "--out", "a-folder"], "it is a folder; expected a file path"),
        (["report", str(run), "--out", "report.txt"], "expected a file ending in .html"),
        (["plot", str(run), "--out", "curve.txt"], "expected a file ending in .eps"),
        (["lab", "rps", "--rounds", "10", "--out", "a-file.txt"], "it is a file"),
        (["lab", "variance", "--env", "Pendulum-v1", "--checkpoint", str(run)],
         "was trained on 'CartPole-v1', not --env 'Pendulum-v1'"),
    ]  # fmt: skip
    before = sorted(tmp_path.rglob("*"))
    for args, message in cases:
        code, _, err = run_cli(monkeypatch, capsys, *args)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and message in lines[0], (args, err)
    assert sorted(tmp_path.rglob("*")) == before
    code, _, _ = run_cli(monkeypatch, capsys, "plot", str(run), "--out", "new/curve.svg")
    assert code == 0 and (tmp_path / "new" / "curve.svg").stat().st_size > 0
