"""``benchmarks/suite.py`` runs a row of the shipped defaults (capped to a few hundred steps),
writes its results and table, and a second call finds the run done and starts nothing; with
``--eval-episodes`` the done run is evaluated once more and that evaluation is its figure."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

import pgrad

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "suite.py"


def load_suite():
    spec = importlib.util.spec_from_file_location("suite", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("suite", module)  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


def test_suite_runs_a_capped_row_and_resumes(tmp_path, capsys):
    suite = load_suite()
    args = ["--out", str(tmp_path), "--algos", "reinforce", "--envs", "CartPole-v1",
            "--seeds", "100", "--max-steps", "300", "--cap", "--jobs", "1"]  # fmt: skip
    assert suite.main(args) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    (run,) = results["runs"].values()
    assert run["status"] == "done", run
    assert (run["algo"], run["env"], run["seed"]) == ("reinforce", "CartPole-v1", 100)
    assert (run["steps"], run["budget"]) == (300, 300_000)
    assert 8 <= run["mean_return"] <= 500  # CartPole's returns, whatever 300 steps learned
    cells = row_cells((tmp_path / "suite.md").read_text())
    assert cells[:3] == ["CartPole-v1", "reinforce", "300 (capped; budget 300,000)"]
    assert cells[3].startswith(f"{run['mean_return']:.1f} ± 0.0")
    assert cells[5] == "475 (Gymnasium)"
    assert cells[6].endswith("; capped") and cells[6].split(" ")[0] in ("solved", "below")

    capsys.readouterr()
    assert suite.main(args) == 0  # resumed: the run is done, nothing starts
    assert "1 of 1 runs already done; 0 to run" in capsys.readouterr().out
    assert json.loads((tmp_path / "results.json").read_text())["runs"] == results["runs"]

    # --eval-episodes evaluates the done run (training nothing) and makes that its figure.
    assert suite.main([*args, "--eval-episodes", "3"]) == 0
    out = capsys.readouterr().out
    assert "0 to run" in out and "1 runs to evaluate on 3 episodes" in out
    record = json.loads((tmp_path / "results.json").read_text())["runs"][run_key(run)]
    evaluation = record["evaluations"]["3"]
    agent_returns = pgrad.load(run["run_dir"]).evaluate(3, seed=suite.EVAL_SEED)
    assert (evaluation["episodes"], evaluation["seed"]) == (3, 1_000_000)
    assert evaluation["mean_return"] == pytest.approx(float(agent_returns.mean()))
    assert record["mean_return"] == run["mean_return"]  # training's own evaluation is kept
    table = (tmp_path / "suite.md").read_text()
    assert "evaluation of the final policy on 3 episodes" in table
    assert row_cells(table)[3].startswith(f"{evaluation['mean_return']:.1f} ± 0.0")

    assert suite.main([*args, "--eval-episodes", "3"]) == 0  # evaluated once only
    assert "0 runs to evaluate on 3 episodes" in capsys.readouterr().out
    assert suite.main([*args, "--eval-episodes", "5", "--table-only"]) == 0  # evaluates nothing
    cells = row_cells((tmp_path / "suite.md").read_text())
    assert cells[3] == "" and "unevaluated runs" in cells[6]


def run_key(run: dict) -> str:
    return f"{run['algo']}/{run['env']}/seed{run['seed']}/steps{run['steps']}"


def row_cells(table: str) -> list[str]:
    (line,) = [row for row in table.splitlines() if row.startswith("| CartPole-v1 |")]
    return [c.strip() for c in line.strip("|").split("|")]


def test_suite_rows_cover_the_standard_envs():
    suite = load_suite()
    rows = {(algo, env) for algo, env, _ in suite.suite_rows(suite.SUITE_ALGOS, ["*"])}
    assert {("ppo", env) for env in suite.SUITE_ENVS} <= rows
    assert {(a, e) for a in ("a2c", "reinforce_baseline") for e in suite.CLASSIC} <= rows
    assert ("sac", "HalfCheetah-v5") in rows and ("sac", "CartPole-v1") not in rows
    runs, skipped = suite.plan([("ppo", "Hopper-v5", 10**6)], [100, 101], 1000, cap=False)
    assert runs == [] and "not run" in skipped[("ppo", "Hopper-v5")]
