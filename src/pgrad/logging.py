"""One place that writes metrics: ``metrics.csv``, TensorBoard, and a rich progress bar."""

from __future__ import annotations

import csv
import io
import math
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pgrad.runs import atomic_write


class MetricsLogger:
    """Writes one row per update.

    ``metrics.csv`` holds only quantities that a seed determines, so two runs with the same seed
    and config give identical files; wall-clock figures (``time/sps``) go to TensorBoard and the
    progress bar only.
    """

    def __init__(
        self,
        run_dir: Path,
        total_steps: int,
        progress: bool = False,
        keep_rows_to: int | None = None,
        headline: str = "episode_return",
        time_before: float = 0.0,
    ):
        """With ``keep_rows_to`` (a resumed run), the existing rows up to that step are kept and
        later ones (logged after the checkpoint being resumed from) dropped. ``time_before``:
        the training time of the segments before a resume, so that steps per second (step /
        training time, as in ``summary.json``) count the steps and the time of all of them."""
        self.run_dir = run_dir
        self.headline = headline
        self.file = None
        self._open(keep_rows_to)
        self.tensorboard = self._tensorboard(keep_rows_to)
        self.start = time.perf_counter() - time_before
        self.progress: Progress | None = None
        if progress:
            self.progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("steps"),
                TimeElapsedColumn(),
                TextColumn("{task.fields[info]}"),
            )
            self.task = self.progress.add_task("training", total=total_steps, info="")
            self.progress.start()

    def _open(self, keep_rows_to: int | None) -> None:
        """Open ``metrics.csv``: a new file, or (``keep_rows_to``) the existing one cut back to
        its rows up to that step, replaced atomically so that a kill meanwhile leaves the old
        rows whole, and appended to from there; ``warnings.txt`` is cut back with it."""
        header = None
        path = self.run_dir / "metrics.csv"
        if self.file is not None:
            self.file.close()
        if keep_rows_to is not None:
            self._keep_warnings(keep_rows_to)
        if keep_rows_to is not None and path.exists():
            with open(path, newline="") as f:
                header, *rows = list(csv.reader(f)) or [None]
            if header:
                text = io.StringIO(newline="")
                csv.writer(text).writerows(
                    [header, *(r for r in rows if int(r[0]) <= keep_rows_to)]
                )
                atomic_write(path, text.getvalue().encode())
        self.file = open(path, "a" if header else "w", newline="")  # noqa: SIM115 (see close())
        self.writer: csv.DictWriter | None = None
        if header:
            self.writer = csv.DictWriter(self.file, fieldnames=header)

    def _keep_warnings(self, step: int) -> None:
        """Cut ``warnings.txt`` back to the warnings up to ``step``, as ``metrics.csv``: those
        after it are raised again (or not) in the replayed stretch."""
        path = self.run_dir / "warnings.txt"
        if not path.exists():
            return
        lines = path.read_text().splitlines(keepends=True)
        kept = [line for line in lines if _warning_step(line) <= step]
        if len(kept) < len(lines):
            atomic_write(path, "".join(kept).encode())

    def _tensorboard(self, keep_rows_to: int | None) -> Any:
        """A writer of a new events file; with ``keep_rows_to``, it tells TensorBoard to drop the
        earlier files' events after that step (``purge_step``), as ``_open`` drops the rows."""
        from torch.utils.tensorboard import SummaryWriter

        purge = None if keep_rows_to is None else keep_rows_to + 1
        return SummaryWriter(str(self.run_dir), purge_step=purge)

    def truncate(self, step: int) -> None:
        """Drop the rows logged after ``step`` (going back to a checkpoint)."""
        self._open(step)
        self.tensorboard.close()
        self.tensorboard = self._tensorboard(step)

    def write(self, step: int, metrics: dict[str, float]) -> None:
        row = {"step": step, **metrics}
        if self.writer is None:
            self.writer = csv.DictWriter(self.file, fieldnames=list(row))
            self.writer.writeheader()
        self.writer.writerow({k: _cell(v) for k, v in row.items()})
        self.file.flush()
        elapsed = time.perf_counter() - self.start
        for key, value in metrics.items():
            if isinstance(value, int | float) and math.isfinite(value):
                self.tensorboard.add_scalar(f"train/{key}", value, step)
        self.tensorboard.add_scalar("time/sps", step / max(elapsed, 1e-9), step)
        if self.progress is not None:
            value = metrics.get(self.headline, float("nan"))
            if self.headline == "episode_return":
                info = f"return {value:.1f}"
            else:
                info = f"{self.headline} {value:.3g}"
            if math.isfinite(metrics.get("eval_return", float("nan"))):
                info += f"  eval {metrics['eval_return']:.1f}"
            if self.headline == "episode_return":
                info += f"  {step / max(elapsed, 1e-9):,.0f} sps"
            total = self.progress.tasks[0].total or step
            self.progress.update(self.task, completed=min(step, total), info=info)

    def warn(self, message: str, step: int) -> None:
        """A warning at ``step``: printed (once; the caller dedups), appended to
        ``warnings.txt`` as ``step N: message``, and recorded in TensorBoard as text."""
        Console(stderr=True).print(f"[yellow]warning:[/] {escape(message)}", highlight=False)
        with open(self.run_dir / "warnings.txt", "a") as f:
            f.write(f"step {step}: {message}\n")
        self.tensorboard.add_text("warnings", message, step)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
        self.tensorboard.close()
        self.file.close()


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    return value


def _warning_step(line: str) -> int:
    """The step of a ``warnings.txt`` line (``step N: message``); 0 for a line without one."""
    head, sep, _ = line.partition(": ")
    number = head.removeprefix("step ")
    return int(number) if sep and head.startswith("step ") and number.isdigit() else 0
