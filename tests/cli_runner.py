"""Running the ``pgrad`` command in-process, as the test modules do."""

import sys

import pytest

from pgrad.cli import main


def run_cli(monkeypatch, capsys, *args):
    """(exit code, stdout, stderr) of ``pgrad ARGS``."""
    monkeypatch.setattr(sys, "argv", ["pgrad", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    out = capsys.readouterr()
    return exit_info.value.code, out.out, out.err
