"""The one error family of mltrace-otel.

Every error the project raises on purpose is a :class:`MltraceError`: a message that names the
problem and an optional hint that says what to do. The CLI turns them into one red line plus the
hint and exit code 1, in one place. Errors that are the user's own (a ValueError for a missing
variable, the decorated function's exception) keep their mltrace types.

Imports nothing from the project.
"""

from __future__ import annotations


class MltraceError(Exception):
    """Base of every deliberate mltrace-otel error.

    Args:
        message: what went wrong, naming the value at fault.
        hint: what the user can do about it, or None.
    """

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class ConfigError(MltraceError):
    """A setting (environment variable, flag, URL) has a value we cannot use."""


class StoreUnavailable(MltraceError):
    """The store cannot be reached or opened (server down, embedded store locked too long)."""


class NotFound(MltraceError):
    """A run id, output pointer or component that the store does not hold."""


class AmbiguousRunId(MltraceError):
    """A run-id prefix that matches more than one run.

    Attributes:
        candidates: the full ids that the prefix matches (at most a few dozen).
    """

    def __init__(self, prefix: str, candidates: list[str]) -> None:
        shown = ", ".join(candidates[:20]) + (" …" if len(candidates) > 20 else "")
        super().__init__(
            f"run id prefix {prefix!r} matches {len(candidates)} runs: {shown}",
            hint="type more characters of the id",
        )
        self.prefix = prefix
        self.candidates = candidates


class QueryError(MltraceError):
    """A store query failed; carries the query's name and parameters.

    Attributes:
        query: the name of the query (the function that ran it).
        parameters: the bound parameters it ran with.
    """

    def __init__(self, query: str, parameters: dict | None, cause: str) -> None:
        super().__init__(f"query {query} failed: {cause}")
        self.query = query
        self.parameters = dict(parameters or {})
