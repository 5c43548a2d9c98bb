"""Run directories: config, metrics, checkpoints and summary, written atomically.

Layout of a run directory::

    config.yaml        every resolved setting, plus algo and env
    metrics.csv        one row per update (deterministic: no wall-clock columns)
    events.out.tfevents.*   the same metrics (and timings) for TensorBoard
    checkpoints/step-000000100000.pt   the last ``keep_checkpoints`` checkpoints
    summary.json       the final evaluation: mean_return, std_return, episodes, steps, wall_time_s
    learning_curve.png

Files that must never be seen half-written (checkpoints, summary.json, config.yaml) are written to a
temporary file in the same directory, fsynced, then renamed over the target: a crash at any moment
leaves either the old file or the new one.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from pgrad.errors import PgradError

CHECKPOINT_FORMAT = 1


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old content or the new, never a part."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def output_file(out: str | Path, suffixes: tuple[str, ...]) -> Path:
    """``out`` as a file to write, checked before any work: a one-line error if it is a folder
    or does not end in one of ``suffixes``. (Its folder is made when it is written.)"""
    out = Path(out)
    if out.is_dir():
        raise PgradError(f"cannot write {str(out)!r}: it is a folder; expected a file path")
    if out.suffix.lower() not in suffixes:
        raise PgradError(
            f"cannot write {str(out)!r}: expected a file ending in {' or '.join(suffixes)}"
        )
    return out


def output_folder(out: str | Path) -> Path:
    """``out`` as a folder to write results into: a one-line error if it is a file."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise PgradError(f"cannot write results into {str(out)!r}: it is a file; expected a folder")
    return out


def create(path: str | Path | None, algo: str, env_id: str, seed: int) -> Path:
    """A new, empty run directory (by default ``runs/ALGO-ENV-sSEED-TIME``)."""
    if path is None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = Path("runs") / f"{algo}-{env_id}-s{seed}-{stamp}"
        suffix = 1
        while path.exists():
            suffix += 1
            path = path.with_name(f"{algo}-{env_id}-s{seed}-{stamp}-{suffix}")
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        what = "is a file" if not path.is_dir() else "already exists and is not empty"
        raise PgradError(f"run directory {str(path)!r} {what}; choose another --run-dir")
    try:
        (path / "checkpoints").mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise PgradError(f"cannot write run directory {str(path)!r}: {e.strerror}") from None
    return path


def write_yaml(path: Path, data: dict[str, Any]) -> None:
    atomic_write(path, yaml.safe_dump(data, sort_keys=False).encode())


def write_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write(path, (json.dumps(data, indent=2) + "\n").encode())


def save_checkpoint(run_dir: Path, step: int, state: dict[str, Any], keep: int) -> Path:
    """Write ``checkpoints/step-N.pt`` atomically and delete all but the newest ``keep``."""
    buffer = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, "step": step, **state}, buffer)
    path = run_dir / "checkpoints" / f"step-{step:012d}.pt"
    atomic_write(path, buffer.getvalue())
    for old in checkpoints(run_dir)[:-keep]:
        old.unlink(missing_ok=True)
    for stale in (run_dir / "checkpoints").glob(".step-*.tmp"):  # from writers killed mid-write
        if not stale.name.endswith(f".{os.getpid()}.tmp"):
            stale.unlink(missing_ok=True)
    return path


def checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoint files, oldest first."""
    return sorted((run_dir / "checkpoints").glob("step-*.pt"))


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for truncated or foreign files
        raise PgradError(
            f"checkpoint {str(path)!r} is corrupt or truncated ({type(e).__name__})"
        ) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise PgradError(
            f"checkpoint {str(path)!r} is not a pgrad checkpoint (format {CHECKPOINT_FORMAT})"
        )
    return state


@dataclass(frozen=True)
class Run:
    """A run directory on disk, as returned by ``pgrad.train``."""

    path: Path

    @classmethod
    def open(cls, path: str | Path) -> Run:
        """Check that ``path`` is a pgrad run directory, with a one-line error if not."""
        path = Path(path)
        if not path.is_dir():
            what = "is a file, not a run directory" if path.exists() else "does not exist"
            raise PgradError(f"run directory {str(path)!r} {what}")
        if not (path / "config.yaml").is_file():
            raise PgradError(f"{str(path)!r} is not a pgrad run directory (no config.yaml)")
        run = cls(path)
        _ = run.config
        return run

    @property
    def config(self) -> dict[str, Any]:
        try:
            data = yaml.safe_load((self.path / "config.yaml").read_text())
        except (OSError, yaml.YAMLError):
            data = None
        if not isinstance(data, dict) or "algo" not in data or "env" not in data:
            raise PgradError(f"{str(self.path / 'config.yaml')!r} is corrupt")
        return data

    @property
    def summary(self) -> dict[str, Any]:
        path = self.path / "summary.json"
        if not path.is_file():
            raise PgradError(f"run {str(self.path)!r} has no summary.json (did it finish?)")
        return json.loads(path.read_text())

    def metrics(self) -> list[dict[str, float]]:
        """Rows of metrics.csv as floats (missing values as NaN)."""
        path = self.path / "metrics.csv"
        if not path.is_file():
            raise PgradError(f"run {str(self.path)!r} has no metrics.csv")
        with open(path, newline="") as f:
            return [
                {k: float(v) if v not in ("", None) else float("nan") for k, v in row.items()}
                for row in csv.DictReader(f)
            ]

    def latest_checkpoint(self) -> Path:
        found = checkpoints(self.path)
        if not found:
            raise PgradError(f"run {str(self.path)!r} has no checkpoint")
        return found[-1]
