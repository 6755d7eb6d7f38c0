"""User-facing errors: the CLI prints these as one line and exits with code 2, never a traceback."""


class MgaError(Exception):
    """A mistake in input, config or environment that the user can fix."""

    exit_code = 2
