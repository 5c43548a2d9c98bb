"""``pgrad report``: one self-contained HTML page for a run or a group of runs.

Per (algorithm, env) group: the learning curve (mean and min-max spread over the group's runs,
``plot.plot_runs``), the evaluation table (one row per run, from ``summary.json``), the config
(keys that differ between runs first, then the shared ones), the warnings, and optionally a GIF
of the best run's policy. Images are embedded as base64 data URIs, so the file opens in any
browser with no server and can be mailed around.
"""

from __future__ import annotations

import base64
import html
import statistics
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from pgrad.errors import PgradError
from pgrad.plot import plot_runs
from pgrad.runs import Run, output_file

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 980px; margin: 2em auto; color: #222; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em; }
th, td { border: 1px solid #ccc; padding: 3px 9px; text-align: right; }
th { background: #f2f2f2; } td.key, th.key { text-align: left; }
img { max-width: 100%; } .warning { color: #a15c00; }
"""


def _data_uri(path: Path, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode()}"


def _table(header: list[str], rows: list[list[Any]], table_id: str) -> str:
    head = "".join(f"<th{' class=key' if i == 0 else ''}>{html.escape(h)}</th>"
                   for i, h in enumerate(header))  # fmt: skip
    body = "".join(
        "<tr>" + "".join(f"<td{' class=key' if i == 0 else ''}>{html.escape(str(c))}</td>"
                         for i, c in enumerate(row)) + "</tr>"
        for row in rows
    )  # fmt: skip
    return f'<table id="{table_id}"><tr>{head}</tr>{body}</table>'


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return "-" if value is None else str(value)


def _section(index: int, label: str, runs: list[Run], tmp: Path, video: bool) -> str:
    curve = plot_runs(runs, tmp / f"curve-{index}.png")
    summaries = [r.summary for r in runs]
    rows = [
        [r.path.name, s.get("seed"), _fmt(s.get("mean_return")), _fmt(s.get("std_return")),
         _fmt(s.get("steps")), _fmt(s.get("train_time_s")), _fmt(s.get("sps"))]
        for r, s in zip(runs, summaries, strict=True)
    ]  # fmt: skip
    finished = [s["mean_return"] for s in summaries if s.get("mean_return") is not None]
    if len(finished) > 1:
        mean, spread = statistics.mean(finished), statistics.pstdev(finished)
        rows.append(["all runs (mean ± std)", "", f"{mean:,.1f} ± {spread:,.1f}", "", "", "", ""])
    evaluation = _table(
        ["run", "seed", "final eval return", "std over episodes", "steps", "train time (s)",
         "steps/s"], rows, f"evaluation-{index}",
    )  # fmt: skip
    configs = [r.config for r in runs]
    keys = list(configs[0])
    differ = [k for k in keys if len({repr(c.get(k)) for c in configs}) > 1]
    shared = [k for k in keys if k not in differ]
    config_rows = [[k, *(c.get(k) for c in configs)] for k in differ] + [
        [k, configs[0][k], *[""] * (len(configs) - 1)] for k in shared
    ]
    config = _table(["key", *(r.path.name for r in runs)], config_rows, f"config-{index}")
    warnings = "".join(
        f'<li class="warning">{html.escape(r.path.name)}: {html.escape(w)}</li>'
        for r, s in zip(runs, summaries, strict=True) for w in s.get("warnings", [])
    )  # fmt: skip
    parts = [
        f"<h2>{html.escape(label)}</h2>",
        f'<img id="curve-{index}" alt="learning curve" src="{_data_uri(curve, "image/png")}">',
        "<h3>Final evaluation</h3>", evaluation,
    ]  # fmt: skip
    if warnings:
        parts += ["<h3>Warnings</h3>", f"<ul>{warnings}</ul>"]
    if video:
        from pgrad.record import record

        best = best_run(runs, summaries)
        gif, returns = record(best.path, tmp / f"video-{index}.gif")
        parts += [
            f"<h3>Policy of {html.escape(best.path.name)} (return {returns[0]:,.1f})</h3>",
            f'<img id="video-{index}" alt="policy video" src="{_data_uri(gif, "image/gif")}">',
        ]
    parts += ["<h3>Config</h3>", config]
    return "\n".join(parts)


def report(run_dirs: list[str | Path], out: str | Path, video: bool = False) -> Path:
    """Write the HTML report of ``run_dirs`` to ``out``; returns ``out``."""
    if not run_dirs:
        raise PgradError("report needs at least one run directory")
    output_file(out, (".html", ".htm"))
    runs = [Run.open(d) for d in run_dirs]
    groups: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        config = run.config
        groups[f"{config['algo']} on {config['env']}"].append(run)
    with tempfile.TemporaryDirectory() as tmp:
        sections = [
            _section(i, label, group, Path(tmp), video)
            for i, (label, group) in enumerate(groups.items())
        ]
    title = "pgrad report: " + ", ".join(groups)
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>\n"
        + "\n<hr>\n".join(sections)
        + "\n</body></html>\n"
    )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page)
    return out


def best_run(runs: list, summaries: list[dict]) -> Any:
    """The run whose summary has the highest mean return; one without a mean return (stopped
    before its final evaluation) ranks last, and 0.0 is a return like any other (Pong)."""

    def mean(summary: dict) -> float:
        value = summary.get("mean_return")
        return float("-inf") if value is None else value

    return max(zip(runs, summaries, strict=True), key=lambda rs: mean(rs[1]))[0]
