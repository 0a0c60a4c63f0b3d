"""One exception tree: retryable (try again later) versus fatal (fix the input or config)."""

from __future__ import annotations


class ChaintradeError(Exception):
    """Base of every error raised by Chaintrade. ``reason`` is a stable, countable code."""

    reason: str = "error"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class RetryableError(ChaintradeError):
    """A dependency is busy or unreachable; the same call may succeed later."""

    reason = "retryable"


class FatalError(ChaintradeError):
    """The input or configuration is wrong; retrying the same call cannot help."""

    reason = "fatal"


class ServiceUnavailable(RetryableError):
    """A service (database, serving, terminal) did not answer in time."""

    reason = "service_unavailable"


class ConfigError(FatalError):
    """A setting is missing or invalid; the message says which and what to do."""

    reason = "config_error"


class DataValidationError(FatalError):
    """Data failed validation; ``counts`` holds rejected rows per reason code."""

    reason = "data_invalid"

    def __init__(self, message: str, *, counts: dict[str, int] | None = None) -> None:
        super().__init__(message)
        self.counts = counts or {}


class ModelNotFound(FatalError):
    """No model version holds the requested alias in the registry."""

    reason = "model_not_found"
