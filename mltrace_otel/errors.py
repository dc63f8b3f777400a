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
        more: the prefix matches more runs than ``candidates`` lists.
    """

    def __init__(self, prefix: str, candidates: list[str], more: bool = False) -> None:
        self.prefix = prefix
        self.candidates = candidates
        self.more = more
        shown = ", ".join(candidates[:20]) + (" …" if len(candidates) > 20 or more else "")
        super().__init__(f"run id prefix {prefix!r} matches {self.count} runs: {shown}",
                         hint="type more characters of the id")

    @property
    def count(self) -> str:
        """How many runs the prefix matches, as said to a user ("more than 50" when capped)."""
        return f"more than {len(self.candidates)}" if self.more else str(len(self.candidates))


class QueryError(MltraceError):
    """A store query failed; carries the query's name and parameters.

    Attributes:
        query: the name of the query (the function that ran it).
        parameters: the bound parameters it ran with.
        code: the ClickHouse error code (``Code: N``), or None when the failure was not the
            engine's (e.g. the driver refused a value before sending it).
        data: the statement's own data cannot be stored as sent (retrying cannot help).
    """

    def __init__(self, query: str, parameters: dict | None, cause: str, code: int | None = None,
                 data: bool = False) -> None:
        super().__init__(f"query {query} failed: {cause}")
        self.query = query
        self.parameters = dict(parameters or {})
        self.code = code
        self.data = data or code in DATA_ERROR_CODES


class BadRequest(MltraceError):
    """An OTLP request cannot be accepted as sent (HTTP 400; gRPC INVALID_ARGUMENT). Not retryable."""

    status = 400


class PayloadTooLarge(BadRequest):
    """An OTLP body exceeds the size limit, compressed or decompressed (HTTP 413)."""

    status = 413


class UnsupportedMediaType(BadRequest):
    """A Content-Type or Content-Encoding the collector does not speak (HTTP 415)."""

    status = 415


class QueueFull(MltraceError):
    """The collector's queue cannot take the request now (HTTP 429); retry after
    :attr:`retry_after` seconds."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message, hint=f"retry after {retry_after:g} s")
        self.retry_after = retry_after


class Unavailable(MltraceError):
    """The store is stalled or failing, or the collector is stopping (HTTP 503); retry later."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message, hint=f"retry after {retry_after:g} s")
        self.retry_after = retry_after


class AckTimeout(Unavailable):
    """A request's batch was not committed in time (it may still land later)."""


class Rejected(MltraceError):
    """The store refused a request's data on its own: retrying cannot help (HTTP 400)."""


class CommandError(MltraceError):
    """The UI's command-bar text is not a command we know, or misses its argument."""


class ApiError(MltraceError):
    """A request to the HTTP query API that cannot be served as sent, with its HTTP status (bad
    parameters: 400; a POST body that is not JSON: 415)."""

    def __init__(self, message: str, status: int = 400, hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.status = status


DATA_ERROR_CODES: frozenset[int] = frozenset({
    6, 26, 27, 32, 33, 38, 41, 53, 69, 70, 72, 117, 128, 130, 131, 190, 321, 349, 407, 444, 467})
"""ClickHouse error codes that say the inserted data itself cannot be stored as sent (parse
errors, type mismatches, values out of range, a corrupt Protobuf message): retrying the same
insert cannot help; rendering it another way may."""

STORAGE_ERROR_CODES: dict[int, str] = {
    74: "io", 75: "io", 76: "io", 425: "io", 1000: "io", 1001: "io",
    243: "no_space", 252: "too_many_parts", 173: "memory", 241: "memory",
    159: "timeout", 209: "timeout", 210: "unavailable", 202: "busy", 203: "busy", 236: "busy",
    242: "read_only", 319: "unavailable", 394: "busy", 999: "unavailable", 225: "unavailable",
    279: "unavailable",
}
"""ClickHouse error codes that say the store cannot write now (no space, too many parts, out of
memory, a timeout, I/O): the same insert is retried later, never dropped. The value is the
``reason`` label of ``mltrace_collector_store_retries_total``."""


def store_failure(e: BaseException) -> tuple[str, str]:
    """How a failed store write should be handled: ``("data", reason)`` (the data itself is
    refused: render it another way), ``("storage", reason)`` (the store cannot write now: retry),
    or ``("other", "other")`` (unknown: retry a few times, then treat as data). Decided by the
    exception type and the ClickHouse error code kept on :class:`QueryError`, never by message
    text."""
    while e is not None:
        if isinstance(e, StoreUnavailable):
            return "storage", "unavailable"
        if isinstance(e, QueryError):
            if e.data:
                return "data", "data"
            if e.code in STORAGE_ERROR_CODES:
                return "storage", STORAGE_ERROR_CODES[e.code]
            return "other", "other"
        if isinstance(e, OSError):  # a journal or dead-letter file write
            return "storage", "no_space" if e.errno == 28 else "io"
        e = e.__cause__  # type: ignore[assignment]
    return "other", "other"


# --- extras: what a base install (`pip install mltrace-otel`) does not have --------------------
SERVER_MODULES: tuple[str, ...] = ("chdb", "clickhouse_connect", "dash", "flask", "werkzeug",
                                   "prometheus_client", "grpc")
"""Top-level modules of the ``server`` extra that mltrace server / ui / collector import: the
store's drivers (clickhouse-connect, chDB), the UI and HTTP API (Dash, Flask), /metrics and the
collector's gRPC receiver."""


def store_modules(embedded: bool) -> tuple[str, ...]:
    """The modules opening a store imports: clickhouse-connect, and chDB for the embedded one."""
    return ("clickhouse_connect", "chdb") if embedded else ("clickhouse_connect",)


def missing_extra(what: str, extra: str = "server", module: str | None = None,
                  alternative: str = "") -> ConfigError:
    """The one-line error for a part of mltrace-otel used without the extra that installs it:
    ``mltrace ui needs the server extra: pip install 'mltrace-otel[server]' (dash is not
    installed)``, then ``; alternative`` when given."""
    msg = f"{what} needs the {extra} extra: pip install 'mltrace-otel[{extra}]'"
    if module:
        msg += f" ({module} is not installed)"
    if alternative:
        msg += f"; {alternative}"
    return ConfigError(msg)


def require_extra(what: str, modules: tuple[str, ...], extra: str = "server",
                  alternative: str = "") -> None:
    """Raise :func:`missing_extra` when one of ``modules`` (top-level names) is not installed.
    Looked up with ``importlib.util.find_spec``: nothing is imported.

    Raises:
        ConfigError: naming ``what``, the extra and the first missing module.
    """
    from importlib.util import find_spec

    for name in modules:
        if find_spec(name) is None:
            raise missing_extra(what, extra, name, alternative)


def extra_of(e: ImportError) -> str | None:
    """The extra that installs the module an ImportError names (``"server"`` for chDB, Dash,
    ...), or None: a module no extra installs (a bug to report, not an install to fix)."""
    name = getattr(e, "name", None) or ""
    top = name.split(".")[0]
    if top in SERVER_MODULES or name.startswith("google.rpc") or top == "plotly":
        return "server"
    return None
