"""``benchmarks/suite.py`` runs a row of the shipped defaults (capped to a few hundred steps),
writes its results and table, and a second call finds the run done and starts nothing."""

import importlib.util
import json
import sys
from pathlib import Path

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
    table = (tmp_path / "suite.md").read_text()
    (line,) = [row for row in table.splitlines() if row.startswith("| CartPole-v1 |")]
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[:3] == ["CartPole-v1", "reinforce", "300 (capped; budget 300,000)"]
    assert cells[3].startswith(f"{run['mean_return']:.1f} ± 0.0")
    assert cells[5] == "475 (Gymnasium)"
    assert cells[6].endswith("; capped") and cells[6].split(" ")[0] in ("solved", "below")

    capsys.readouterr()
    assert suite.main(args) == 0  # resumed: the run is done, nothing starts
    assert "1 of 1 runs already done; 0 to run" in capsys.readouterr().out
    assert json.loads((tmp_path / "results.json").read_text())["runs"] == results["runs"]


def test_suite_rows_cover_the_standard_envs():
    suite = load_suite()
    rows = {(algo, env) for algo, env, _ in suite.suite_rows(suite.SUITE_ALGOS, ["*"])}
    assert {("ppo", env) for env in suite.SUITE_ENVS} <= rows
    assert {(a, e) for a in ("a2c", "reinforce_baseline") for e in suite.CLASSIC} <= rows
    assert ("sac", "HalfCheetah-v5") in rows and ("sac", "CartPole-v1") not in rows
    runs, skipped = suite.plan([("ppo", "Hopper-v5", 10**6)], [100, 101], 1000, cap=False)
    assert runs == [] and "not run" in skipped[("ppo", "Hopper-v5")]
