"""SIGKILL a process while it writes checkpoints, many times; the latest checkpoint must load.

    python benchmarks/crash_safety.py --kills 200

A child process writes checkpoints (a real model's state plus a few MB of padding, so a write
takes long enough to be interrupted) into one run directory in a loop, keeping the last 3, as
training does. The parent kills it with SIGKILL after a random delay, then loads the newest
checkpoint with ``pgrad.runs.load_checkpoint`` and starts a new writer, ``--kills`` times.
Prints how many kills landed and how many left the latest checkpoint unloadable (must be 0).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

WRITER = """
import sys, torch
from pathlib import Path
from pgrad import runs
run_dir, start = Path(sys.argv[1]), int(sys.argv[2])
state = {"model": torch.nn.Linear(256, 256).state_dict(), "padding": torch.randn(1_000_000)}
(run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
print("ready", flush=True)
step = start
while True:
    step += 1
    runs.save_checkpoint(run_dir, step, state, keep=3)
"""


def kill_loop(run_dir: Path, kills: int, seed: int = 0) -> tuple[int, int, int]:
    """(kills done, kills that interrupted a write, latest checkpoints that failed to load)."""
    from pgrad.errors import PgradError
    from pgrad.runs import checkpoints, load_checkpoint

    rng = np.random.default_rng(seed)
    failures = torn = 0
    step = 0
    for _ in range(kills):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(run_dir), str(step)], stdout=subprocess.PIPE
        )
        proc.stdout.readline()  # imports done; writing from now on
        time.sleep(rng.uniform(0.0, 0.3))
        proc.kill()
        proc.wait()
        torn += any((run_dir / "checkpoints").glob(".step-*.tmp"))
        latest = checkpoints(run_dir)
        if latest:
            try:
                step = int(load_checkpoint(latest[-1])["step"])
            except PgradError:
                failures += 1
    return kills, torn, failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kills", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        kills, torn, failures = kill_loop(Path(tmp) / "run", args.kills)
    print(f"{kills} SIGKILLs of a checkpoint writer, {torn} of them mid-write (a partial temp "
          f"file left); latest checkpoint unloadable after {failures} of them")  # fmt: skip


if __name__ == "__main__":
    main()
