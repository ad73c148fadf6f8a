"""Error types.

Startup failures (bad config, app that can't be loaded, unusable certificate,
port in use) are raised as :class:`StartupError` below the CLI and printed by
the CLI as one line; nothing below the CLI calls ``sys.exit``.
Protocol errors carry the HTTP/2 error code they put on the wire.
"""

from __future__ import annotations

from h2.errors import ErrorCodes


class StartupError(Exception):
    """The server cannot start; the message is one readable line for the user."""


class ConfigError(StartupError):
    """A configuration value (flag, env var, config file key) is invalid."""


class AppLoadError(StartupError):
    """The application named on the command line cannot be loaded."""


class ProtocolViolation(Exception):
    """The peer broke a rule; ``error_code`` is what goes into RST_STREAM/GOAWAY."""

    def __init__(self, message: str, error_code: ErrorCodes = ErrorCodes.PROTOCOL_ERROR) -> None:
        super().__init__(message)
        self.error_code = error_code


class ClientDisconnected(OSError):
    """Raised to an app that sends on a stream the client has reset or closed."""
