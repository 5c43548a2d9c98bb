"""Kill a ``pgrad`` process with SIGKILL at a chosen point of its n-th checkpoint write.

A timer that kills "at a random moment" lands wherever the scheduler puts it: on a loaded
machine it may never hit a write, and the test that counts on it fails at random. Here the
child process patches ``pgrad.runs`` so that it kills itself at an exact point instead:

- ``before``: as the n-th checkpoint write starts (progress since the last checkpoint is lost);
- ``mid-write``: with half of the n-th checkpoint's bytes in its temporary file;
- ``before-fsync``: all bytes written to the temporary file, not yet fsynced;
- ``before-rename``: fsynced, not yet renamed over the target;
- ``after-rename``: the new checkpoint in place, the directory not yet fsynced and the old
  checkpoints not yet pruned.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from cli_runner import HANG_GUARD_S

POINTS = ("before", "mid-write", "before-fsync", "before-rename", "after-rename")

PRELUDE = r"""
import builtins, os, signal, sys
from pgrad import runs

point, nth = sys.argv[1], int(sys.argv[2])
sys.argv = ["pgrad", *sys.argv[3:]]
writes = 0


def die():
    os.kill(os.getpid(), signal.SIGKILL)


def checkpoint_file(path):
    return "step-" in os.path.basename(str(path))


class HalfWriter:
    def __init__(self, f):
        self.f = f

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self.f.__exit__(*exc)

    def write(self, data):
        self.f.write(data[: len(data) // 2])
        self.f.flush()
        die()

    def __getattr__(self, name):
        return getattr(self.f, name)


class Os:
    # ``runs`` calls os.fsync / os.replace through its module global ``os``.
    def __getattr__(self, name):
        return getattr(os, name)

    def fsync(self, fd):
        if armed() and point == "before-fsync" and not os.path.isdir(f"/proc/self/fd/{fd}"):
            die()
        os.fsync(fd)

    def replace(self, src, dst):
        if armed() and point == "before-rename" and checkpoint_file(src):
            die()
        os.replace(src, dst)
        if armed() and point == "after-rename" and checkpoint_file(src):
            die()


def armed():
    return writes == nth


def open_(path, mode="r", *args, **kwargs):
    f = builtins.open(path, mode, *args, **kwargs)
    if armed() and point == "mid-write" and checkpoint_file(path):
        return HalfWriter(f)
    return f


save = runs.save_checkpoint


def save_checkpoint(*args, **kwargs):
    global writes
    writes += 1
    if armed() and point == "before":
        die()
    return save(*args, **kwargs)


runs.save_checkpoint, runs.os, runs.open = save_checkpoint, Os(), open_
from pgrad.cli import main
main()
"""


def run_killed(point: str, nth: int, *args: str, cwd: Path | None = None):
    """Run ``pgrad ARGS`` until it kills itself at ``point`` of its ``nth`` checkpoint write
    (or ends first); the finished ``CompletedProcess``."""
    assert point in POINTS, point
    return subprocess.run(
        [sys.executable, "-c", PRELUDE, point, str(nth), *args],
        capture_output=True, text=True, timeout=HANG_GUARD_S, cwd=cwd,
    )  # fmt: skip
