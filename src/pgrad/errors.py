"""The one exception type users see: a clear, one-line message about bad input."""


class PgradError(Exception):
    """Bad input or a bad run directory; the CLI prints ``error: <message>`` and exits with 2."""


class NonFiniteError(PgradError):
    """A NaN or Inf in a loss or gradient; the update that met it was not applied."""
