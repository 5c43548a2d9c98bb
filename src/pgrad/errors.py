"""The one exception type users see: a clear, one-line message about bad input."""


class PgradError(Exception):
    """Bad input or a bad run directory; the CLI prints ``error: <message>`` and exits with 2."""


class NonFiniteError(PgradError):
    """A NaN or Inf in a loss or gradient; the update that met it was not applied."""


def module_name(module: str, what: str) -> str:
    """``module`` if it is a dotted Python name (as ``importlib.import_module`` takes it),
    else a one-line error about ``what`` (the user's ``MODULE:NAME``, e.g. "env 'x:Y-v0'")."""
    if not module or not all(part.isidentifier() for part in module.split(".")):
        raise PgradError(f"{what}: {module!r} is not a module name; expected MODULE:NAME")
    return module
