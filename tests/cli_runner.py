"""Running the ``pgrad`` command in-process, as the test modules do."""

import sys

import pytest

from pgrad.cli import main

HANG_GUARD_S = 1800
"""Seconds a ``pgrad`` subprocess may run before a test calls it hung. A guard against hangs,
never a measurement: generous enough that a loaded 2-core machine does not trip it (a 300 s
guard on an RLHF reward run did, beside three training jobs)."""


def run_cli(monkeypatch, capsys, *args):
    """(exit code, stdout, stderr) of ``pgrad ARGS``."""
    monkeypatch.setattr(sys, "argv", ["pgrad", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    out = capsys.readouterr()
    return exit_info.value.code, out.out, out.err
