"""Errors raised while collecting, each with a sentence a person understands."""

from __future__ import annotations


class CollectError(Exception):
    """A collection step failed.

    `message` says what went wrong and what to do, in plain words. `permanent` is True when
    retrying the same request will not help (a 404, a blocked address, a bad selector), so the
    scheduler backs off harder and health shows it as a configuration problem.
    """

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent


class ConfigError(CollectError):
    """A source's configuration is invalid (bad selector, missing field, unknown format)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, permanent=True)
