"""Learning curves: the mean over runs of the same algorithm and env, with their spread."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from pgrad.errors import PgradError
from pgrad.runs import Run, output_file


def curve(run: Run, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of ``metric`` in ``run``'s metrics.csv, NaN rows dropped."""
    rows = run.metrics()
    if rows and metric not in rows[0]:
        raise PgradError(
            f"metric {metric!r} is not in {str(run.path)!r}; it has {', '.join(rows[0])}"
        )
    points = [(r["step"], r[metric]) for r in rows if not math.isnan(r[metric])]
    if not points:
        return np.zeros(0), np.zeros(0)
    steps, values = map(np.asarray, zip(*points, strict=True))
    return steps, values


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend (files only, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, out: str | Path, legend_fontsize: float | None = None) -> Path:
    """Grid and legend on every axis of ``fig``, then write it to ``out`` as PNG and close it."""
    for ax in fig.axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=legend_fontsize)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    pyplot().close(fig)
    return out


def common_grid(
    curves: list[tuple[np.ndarray, np.ndarray]], points: int = 200
) -> tuple[np.ndarray, np.ndarray]:
    """(grid, values): each (steps, values) curve interpolated on ``points`` steps over the
    range every curve covers (from the latest first row to the earliest last one), so no run
    is extended flat beyond its own rows; one row per curve."""
    end = min(c[0][-1] for c in curves)
    start = min(max(c[0][0] for c in curves), end)
    grid = np.linspace(start, end, points)
    return grid, np.stack([np.interp(grid, s, v) for s, v in curves])


def plot_runs(runs: list[Run], out: str | Path, metric: str = "episode_return") -> Path:
    """One line per (algo, env) group: the mean across its runs on a common step grid
    (``common_grid``), shaded between the lowest and highest run (min-max spread), written to
    ``out`` (PNG, or another format matplotlib writes, by its suffix)."""
    plt = pyplot()
    from matplotlib.backend_bases import FigureCanvasBase

    output_file(out, tuple(f".{k}" for k in FigureCanvasBase.get_supported_filetypes()))
    groups: dict[str, list[tuple[np.ndarray, np.ndarray]]] = defaultdict(list)
    for run in runs:
        config = run.config
        groups[f"{config['algo']} on {config['env']}"].append(curve(run, metric))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, curves in groups.items():
        curves = [c for c in curves if len(c[0])]
        if not curves:
            continue
        grid, ys = common_grid(curves)
        n = len(curves)
        ax.plot(grid, ys.mean(0), label=f"{label} ({n} run{'s' if n > 1 else ''})")
        if n > 1:
            ax.fill_between(grid, ys.min(0), ys.max(0), alpha=0.25)
    ax.set_xlabel("environment steps")
    label = metric.replace("_", " ")
    if metric == "episode_return":
        label = "training episode return (sampled actions)"
    ax.set_ylabel(label)
    return save(fig, out)
