"""Settings: the only reader of ``os.environ`` in mltrace-otel.

One frozen :class:`Settings` is built at each entry point (SDK set-up, CLI callback, collector
main, app factory) with :meth:`Settings.from_env` and passed down. Precedence: explicit argument
or flag > ``MLTRACE_*`` > standard ``OTEL_*`` > default. One parser per type; a bool accepts
true/false/1/0 only.

A bad value raises :class:`~mltrace_otel.errors.ConfigError` naming the variable, the value and
the accepted form, unless ``lenient=True`` (the SDK's mode: it warns once and uses the default,
because the user's pipeline must still run).

Every variable is listed in :data:`ENV_VARS` and documented in docs/reference.md (generated from
it by tools/gen_reference.py).
Imports only :mod:`mltrace_otel.errors`.
"""

from __future__ import annotations

import dataclasses
import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from mltrace_otel.errors import ConfigError

ENV_VARS: dict[str, str] = {
    "MLTRACE_DIR": "home of the embedded store, the spool and saved artifacts (default ~/.mltrace)",
    "SAVE_DIR": "where save()/auto_log write artifacts (mltrace's variable; default MLTRACE_DIR)",
    "MLTRACE_CLICKHOUSE_URL": "the store: chdb:///PATH (embedded, default MLTRACE_DIR/store) or "
    "http(s)://user:pass@host:8123/db",
    "MLTRACE_CLICKHOUSE_CLUSTER": "cluster name: ON CLUSTER DDL, Replicated engines, Distributed tables",
    "MLTRACE_TTL_DAYS": "drop spans older than this many days (0 = keep forever)",
    "MLTRACE_STORE_WAIT_S": "how long to wait for an embedded store another process holds (default 30)",
    "MLTRACE_EXPORT": "where spans go: auto (OTLP if an endpoint is set, else the spool), otlp, spool, none",
    "MLTRACE_HASH_MAX_MB": "SDK: a file named as an input or output up to this size is versioned by its "
    "whole content; a bigger one by size, mtime and its first, middle and last MiB; 0: always the "
    "latter (default 64)",
    "MLTRACE_SPOOL_MAX_MB": "spool size above which the SDK stops spooling and counts drops (default 1024)",
    "MLTRACE_DELIVERY": "SDK: who sends the runs to the OTLP endpoint: process (default: a courier "
    "process per pipeline process, so the pipeline's calls never wait for its GIL) or thread",
    "OTEL_EXPORTER_OTLP_ENDPOINT": "OTLP endpoint for spans (standard OTel)",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "OTLP endpoint for spans, signal-specific (standard OTel)",
    "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf (default), http/json or grpc (standard OTel)",
    "OTEL_EXPORTER_OTLP_HEADERS": "headers sent with OTLP requests, k=v,k2=v2 (standard OTel)",
    "OTEL_SERVICE_NAME": "service.name of the spans (standard OTel)",
    "OTEL_BSP_SCHEDULE_DELAY": "SDK: ms between deliveries of the runs appended to the durable queue "
    "(standard OTel; default 2000)",
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "SDK: deliver early once this many runs wait, at most half of "
    "OTEL_BSP_MAX_QUEUE_SIZE (standard OTel; default 4096, not the OTel SDK's 512: runs are on disk "
    "already, and each delivery takes the pipeline's GIL)",
    "OTEL_BSP_MAX_QUEUE_SIZE": "SDK: runs waiting for the OTLP endpoint beyond which a decorated call waits "
    "for it, instead of dropping (standard OTel; default 20000)",
    "OTEL_BSP_EXPORT_TIMEOUT": "SDK: ms one OTLP export may take before its runs stay in the spool "
    "(standard OTel; default 4000)",
    "OTEL_RESOURCE_ATTRIBUTES": "extra resource attributes, k=v,k2=v2 (standard OTel)",
    "MLTRACE_HOST": "address the collector, UI and /metrics bind (default 127.0.0.1)",
    "MLTRACE_OTLP_HTTP_PORT": "collector OTLP/HTTP port (default 4318)",
    "MLTRACE_OTLP_GRPC_PORT": "collector OTLP/gRPC port (default 4317)",
    "MLTRACE_UI_PORT": "Dash app port (default 8050)",
    "MLTRACE_METRICS_PORT": "port of /metrics when served on its own (default 9464)",
    "MLTRACE_TOKEN": "bearer token the collector and UI require (default none)",
    "MLTRACE_SERVER_URL": "an mltrace server or ui (http://host:8050) whose /api/v1 the CLI and query "
    "API ask instead of opening a store; MLTRACE_TOKEN is sent (default none)",
    "MLTRACE_MAX_BODY_BYTES": "largest OTLP request body the collector accepts (default 16 MiB)",
    "MLTRACE_QUEUE_SPANS": "collector queue bound in spans; over it clients get 429 (default 200000)",
    "MLTRACE_BATCH_ROWS": "collector insert batch size in rows (default 5000)",
    "MLTRACE_BATCH_DELAY_S": "collector insert batch delay in seconds (default 1.0)",
    "MLTRACE_NATIVE_INGEST": "collector: let ClickHouse parse and render OTLP requests (default true); "
    "false renders rows in Python",
    "MLTRACE_ACK": "when the collector answers a request: journaled (its bytes committed to the "
    "store's ingest journal, queryable seconds later; the default, embedded store only), indexed "
    "(its rows queryable; the default on a ClickHouse server)",
    "MLTRACE_INDEX_SPANS": "journaled acknowledgement: index once this many spans are journaled, or "
    "MLTRACE_BATCH_DELAY_S after the oldest (default 20000)",
    "MLTRACE_METRICS_LABEL_CAP": "most distinct label values per metric label (default 1000)",
    "MLTRACE_STOP_GRACE_S": "collector/server: longest a SIGTERM waits for queued spans to be written "
    "before exiting; journaled spans left are indexed at the next start (default 30)",
    "MLTRACE_FORWARD_OTLP_ENDPOINTS": "collector/server: also forward every received span, unchanged, to "
    "these OTLP endpoints (comma-separated URLs: http(s)://host:4318 for OTLP/HTTP protobuf, "
    "grpc(s)://host:4317 for OTLP/gRPC; headers as a fragment #key=value&key2=value2; default none)",
    "MLTRACE_FORWARD_QUEUE_SPANS": "forwarding: spans held per endpoint while it is slow or down; beyond "
    "that spans are dropped and counted (default 100000)",
    "DB_SERVER": "mltrace's variable: host of an mltrace server, like set_address(host): OTLP to "
    "http://host:4318, store http://host:8123 (MLTRACE_CLICKHOUSE_URL / OTEL_* endpoints win); "
    "when nothing listens there, runs are kept in the local spool, with one warning",
    "DB_URI": "mltrace's variable: a store URL like MLTRACE_CLICKHOUSE_URL (which wins); mltrace's "
    "SQL URLs (postgresql://, sqlite://, ...) give one warning and are ignored",
}
"""Every environment variable mltrace-otel reads, with a one-line meaning (the table in docs/reference.md)."""

_ACKS = ("auto", "journaled", "indexed")

_BOOL = {"true": True, "1": True, "false": False, "0": False}


def parse_bool(name: str, value: str) -> bool:
    """Parse a bool setting: true/false/1/0 (any case); anything else is a ConfigError."""
    v = value.strip().lower()
    if v not in _BOOL:
        raise ConfigError(f"{name}={value!r} is not a bool", hint="use true, false, 1 or 0")
    return _BOOL[v]


def parse_int(name: str, value: str, minimum: int | None = None) -> int:
    """Parse an integer setting, optionally bounded below."""
    try:
        n = int(value.strip())
    except ValueError:
        raise ConfigError(f"{name}={value!r} is not an integer", hint="use a whole number") from None
    if minimum is not None and n < minimum:
        raise ConfigError(f"{name}={value!r} is below {minimum}", hint=f"use a number >= {minimum}")
    return n


def parse_float(name: str, value: str, minimum: float | None = None) -> float:
    """Parse a float setting, optionally bounded below."""
    try:
        n = float(value.strip())
    except ValueError:
        raise ConfigError(f"{name}={value!r} is not a number", hint="use e.g. 1.5") from None
    if minimum is not None and n < minimum:
        raise ConfigError(f"{name}={value!r} is below {minimum}", hint=f"use a number >= {minimum}")
    return n


def parse_kv_list(name: str, value: str) -> dict[str, str]:
    """Parse OTel's ``k=v,k2=v2`` form (values may be percent-encoded)."""
    from urllib.parse import unquote

    out: dict[str, str] = {}
    for part in value.split(","):
        if not part.strip():
            continue
        if "=" not in part:
            raise ConfigError(f"{name} has {part!r} without '='", hint="use key=value,key2=value2")
        k, v = part.split("=", 1)
        out[unquote(k.strip())] = unquote(v.strip())
    return out


_STORE_SCHEMES = ("chdb", "http", "https")
_EXPORT_MODES = ("auto", "otlp", "spool", "none")
_DELIVERIES = ("process", "thread")
_PROTOCOLS = ("http/protobuf", "http/json", "grpc")


@dataclass(frozen=True)
class ForwardTarget:
    """One OTLP endpoint that received spans are forwarded to (MLTRACE_FORWARD_OTLP_ENDPOINTS).

    Attributes:
        url: where requests go: the full OTLP/HTTP traces URL (``/v1/traces`` appended when the
            given URL had no path), or ``host:port`` for gRPC.
        protocol: ``http/protobuf`` or ``grpc``.
        tls: gRPC over TLS (``grpcs://``); HTTP takes it from the ``https`` scheme.
        headers: sent with every request (e.g. ``authorization``); never logged.
    """

    url: str
    protocol: str
    tls: bool = False
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)

    @property
    def label(self) -> str:
        """The endpoint as shown in logs and metric labels (no headers, no credentials)."""
        return mask_url(self.url) if self.protocol != "grpc" else self.url


def parse_forward_targets(name: str, value: str) -> tuple[ForwardTarget, ...]:
    """Parse MLTRACE_FORWARD_OTLP_ENDPOINTS: comma-separated URLs, each
    ``http(s)://host:port[/path]`` (OTLP/HTTP protobuf; ``/v1/traces`` when no path) or
    ``grpc(s)://host:port`` (OTLP/gRPC), with optional headers as a URL fragment
    ``#key=value&key2=value2`` (percent-encoded; a fragment is never sent). ``user:password@``
    in the URL becomes an ``authorization: Basic`` header unless one is given. Error messages
    never show headers or passwords."""
    import base64
    from urllib.parse import unquote

    out: list[ForwardTarget] = []
    for raw in value.split(","):
        item = raw.strip()
        if not item:
            continue
        shown = mask_url(item.split("#", 1)[0])  # the fragment holds headers (tokens): never shown
        try:
            parts = urlsplit(item)
            port = parts.port
        except ValueError as e:
            raise ConfigError(f"{name} has an unparseable URL {shown!r}: {e}",
                              hint="use http://host:4318 or grpc://host:4317") from None
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https", "grpc", "grpcs") or not parts.hostname:
            raise ConfigError(f"{name} has {shown!r}, which is not an http(s):// or grpc(s):// URL "
                              "with a host", hint="use http://host:4318 or grpc://host:4317")
        headers: dict[str, str] = {}
        for i, kv in enumerate(parts.fragment.split("&") if parts.fragment else (), 1):
            k, sep, v = kv.partition("=")
            if not sep or not k.strip():  # the text may be a token: name its position only
                raise ConfigError(f"{name}: header {i} of {shown!r} is not key=value",
                                  hint="write headers as #key=value&key2=value2 (percent-encoded)")
            headers[unquote(k.strip()).lower()] = unquote(v.strip())
        if parts.username is not None and "authorization" not in headers:
            creds = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
            headers["authorization"] = "Basic " + base64.b64encode(creds).decode("ascii")
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        if scheme in ("grpc", "grpcs"):
            out.append(ForwardTarget(f"{host}:{port or 4317}", "grpc", scheme == "grpcs", headers))
        else:
            netloc = parts.netloc.rsplit("@", 1)[-1]
            path = parts.path if parts.path not in ("", "/") else "/v1/traces"
            out.append(ForwardTarget(urlunsplit((scheme, netloc, path, parts.query, "")),
                                     "http/protobuf", scheme == "https", headers))
    return tuple(out)


def parse_store_url(name: str, value: str) -> str:
    """Check a store URL's scheme and shape; return it unchanged."""
    parts = urlsplit(value)
    if parts.scheme not in _STORE_SCHEMES:
        raise ConfigError(
            f"{name}={mask_url(value)!r} has an unknown scheme",
            hint="use chdb:///path/to/dir or http(s)://user:pass@host:8123/db",
        )
    if parts.scheme == "chdb" and not (parts.path or parts.netloc):
        raise ConfigError(f"{name}={value!r} names no directory", hint="use chdb:///path/to/dir")
    if parts.scheme in ("http", "https") and not parts.hostname:
        raise ConfigError(f"{name}={mask_url(value)!r} names no host", hint="use http://host:8123/db")
    return value


_SQLALCHEMY_SCHEMES = frozenset({"postgresql", "postgres", "mysql", "mariadb", "sqlite", "oracle",
                                 "mssql", "cockroachdb"})
_warned_sql_urls: set[str] = set()


def is_sqlalchemy_url(value: str) -> bool:
    """Whether ``value`` is one of mltrace's SQLAlchemy database URLs (``postgresql://``,
    ``postgresql+psycopg2://``, ``sqlite:///``...): a store this project does not use."""
    scheme = value.strip().split("://", 1)[0].lower() if "://" in value else ""
    return scheme.split("+", 1)[0] in _SQLALCHEMY_SCHEMES


def _warn_sql_url(var: str, value: str) -> None:
    """One warning per process and value: mltrace's SQL URL in DB_URI is ignored."""
    if value in _warned_sql_urls:
        return
    _warned_sql_urls.add(value)
    warnings.warn(
        f"mltrace: ignoring {var}={mask_url(value)!r}: it names mltrace's SQL database, which "
        "mltrace-otel does not use. Runs go to the embedded store (or to the server "
        "MLTRACE_CLICKHOUSE_URL names); set MLTRACE_CLICKHOUSE_URL=http://user:pass@host:8123/db "
        "for a ClickHouse server, and unset DB_URI.", RuntimeWarning, stacklevel=4)


def mask_url(url: str) -> str:
    """The URL with any password replaced by ``***`` (for repr, logs and errors)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit((parts.scheme, f"{user}:***@{host}{port}", parts.path, parts.query, parts.fragment))


def store_database(url: str) -> str:
    """The database a store URL names: the http path, or chdb's ``?database=``; default ``default``."""
    parts = urlsplit(url)
    if parts.scheme == "chdb":
        q = dict(parse_qsl(parts.query))
        db = q.get("database", "default")
    else:
        db = parts.path.strip("/") or "default"
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", db):
        raise ConfigError(f"database name {db!r} in the store URL is not a plain identifier",
                          hint="use letters, digits and _")
    return db


@dataclass(frozen=True)
class Settings:
    """Every setting of mltrace-otel, resolved once per entry point.

    Build with :meth:`from_env`; override single fields with :meth:`replace`.
    """

    mltrace_dir: Path = field(default_factory=lambda: Path.home() / ".mltrace")
    save_dir: Path | None = None
    store_url: str | None = None
    cluster: str | None = None
    ttl_days: int = 0
    store_wait_s: float = 30.0
    export: str = "auto"
    spool_max_mb: int = 1024
    delivery: str = "process"
    hash_max_mb: int = 64
    otlp_endpoint: str | None = None
    otlp_traces_endpoint: str | None = None
    otlp_protocol: str = "http/protobuf"
    otlp_headers: Mapping[str, str] = field(default_factory=dict)
    service_name: str | None = None
    resource_attributes: Mapping[str, str] = field(default_factory=dict)
    host: str = "127.0.0.1"
    otlp_http_port: int = 4318
    otlp_grpc_port: int = 4317
    ui_port: int = 8050
    metrics_port: int = 9464
    token: str | None = field(default=None, repr=False)
    server_url: str | None = None
    max_body_bytes: int = 16 * 1024 * 1024
    queue_spans: int = 200_000
    batch_rows: int = 5000
    batch_delay_s: float = 1.0
    native_ingest: bool = True
    ack: str = "auto"
    index_spans: int = 20_000
    metrics_label_cap: int = 1000
    stop_grace_s: float = 30.0
    forward_targets: tuple[ForwardTarget, ...] = ()
    forward_queue_spans: int = 100_000
    bsp_schedule_delay_ms: int = 2000
    bsp_max_export_batch_size: int = 4096
    bsp_max_queue_size: int = 20_000
    bsp_export_timeout_ms: int = 4000

    def __repr__(self) -> str:  # secrets masked
        fields = []
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name == "token":
                v = "***" if v else None
            elif f.name in ("store_url", "otlp_endpoint", "otlp_traces_endpoint") and v:
                v = mask_url(v)
            elif f.name == "otlp_headers" and v:
                v = {k: "***" for k in v}
            fields.append(f"{f.name}={v!r}")
        return f"Settings({', '.join(fields)})"

    # --- derived -------------------------------------------------------------------------
    @property
    def artifact_dir(self) -> Path:
        """Where save()/auto_log write: SAVE_DIR, else MLTRACE_DIR."""
        return self.save_dir or self.mltrace_dir

    @property
    def spool_dir(self) -> Path:
        """The durable local spool of spans not yet in the store."""
        return self.mltrace_dir / "spool"

    @property
    def resolved_store_url(self) -> str:
        """The store URL: explicit, else the embedded store under MLTRACE_DIR."""
        return self.store_url or f"chdb://{(self.mltrace_dir / 'store').as_posix()}"

    @property
    def journaled_ack(self) -> bool:
        """The collector answers a request once journaled (MLTRACE_ACK; auto: on the embedded
        store, where one process holds the store and its journal)."""
        return self.ack == "journaled" or (self.ack == "auto" and self.is_embedded)

    @property
    def is_embedded(self) -> bool:
        """True when the store is the in-process chDB engine."""
        return self.resolved_store_url.startswith("chdb:")

    @property
    def database(self) -> str:
        """The ClickHouse database the store URL names."""
        return store_database(self.resolved_store_url)

    @property
    def traces_endpoint(self) -> str | None:
        """The OTLP traces endpoint: the signal-specific one, else the generic one (as given)."""
        return self.otlp_traces_endpoint or self.otlp_endpoint

    def replace(self, **changes: object) -> Settings:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    # --- construction --------------------------------------------------------------------
    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, lenient: bool = False,
                 **overrides: object) -> Settings:
        """Read every setting from ``env`` (default ``os.environ``); ``overrides`` win.

        Args:
            env: the environment to read; ``os.environ`` when None.
            lenient: warn once per bad variable and keep its default instead of raising
                (the SDK's mode).
            overrides: explicit values (CLI flags, function arguments); None values are ignored.

        Raises:
            ConfigError: a variable's value is unusable (unless ``lenient``).
        """
        env = os.environ if env is None else env
        kw: dict[str, object] = {}

        def take(var: str, key: str, parse) -> None:  # noqa: ANN001
            raw = env.get(var)
            if raw is None or raw == "":
                return
            try:
                kw[key] = parse(var, raw)
            except ConfigError as e:
                if not lenient:
                    raise
                warnings.warn(f"mltrace: ignoring {e}", RuntimeWarning, stacklevel=3)

        def choice(options: tuple[str, ...]):  # noqa: ANN202
            def parse(var: str, raw: str) -> str:
                v = raw.strip().lower()
                if v not in options:
                    raise ConfigError(f"{var}={raw!r} is not one of {', '.join(options)}")
                return v
            return parse

        def path(var: str, raw: str) -> Path:
            return Path(raw).expanduser()

        def text(var: str, raw: str) -> str:
            return raw.strip()

        take("MLTRACE_DIR", "mltrace_dir", path)
        take("SAVE_DIR", "save_dir", path)
        take("MLTRACE_CLICKHOUSE_URL", "store_url", parse_store_url)
        take("MLTRACE_CLICKHOUSE_CLUSTER", "cluster", text)
        take("MLTRACE_TTL_DAYS", "ttl_days", lambda n, v: parse_int(n, v, 0))
        take("MLTRACE_STORE_WAIT_S", "store_wait_s", lambda n, v: parse_float(n, v, 0))
        take("MLTRACE_EXPORT", "export", choice(_EXPORT_MODES))
        take("MLTRACE_SPOOL_MAX_MB", "spool_max_mb", lambda n, v: parse_int(n, v, 1))
        take("MLTRACE_DELIVERY", "delivery", choice(_DELIVERIES))
        take("MLTRACE_HASH_MAX_MB", "hash_max_mb", lambda n, v: parse_int(n, v, 0))
        take("OTEL_EXPORTER_OTLP_ENDPOINT", "otlp_endpoint", text)
        take("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "otlp_traces_endpoint", text)
        take("OTEL_EXPORTER_OTLP_PROTOCOL", "otlp_protocol", choice(_PROTOCOLS))
        take("OTEL_EXPORTER_OTLP_HEADERS", "otlp_headers", parse_kv_list)
        take("OTEL_SERVICE_NAME", "service_name", text)
        take("OTEL_BSP_SCHEDULE_DELAY", "bsp_schedule_delay_ms", lambda n, v: parse_int(n, v, 0))
        take("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "bsp_max_export_batch_size", lambda n, v: parse_int(n, v, 1))
        take("OTEL_BSP_MAX_QUEUE_SIZE", "bsp_max_queue_size", lambda n, v: parse_int(n, v, 1))
        take("OTEL_BSP_EXPORT_TIMEOUT", "bsp_export_timeout_ms", lambda n, v: parse_int(n, v, 0))
        take("OTEL_RESOURCE_ATTRIBUTES", "resource_attributes", parse_kv_list)
        take("MLTRACE_HOST", "host", text)
        take("MLTRACE_OTLP_HTTP_PORT", "otlp_http_port", lambda n, v: parse_int(n, v, 0))
        take("MLTRACE_OTLP_GRPC_PORT", "otlp_grpc_port", lambda n, v: parse_int(n, v, 0))
        take("MLTRACE_UI_PORT", "ui_port", lambda n, v: parse_int(n, v, 0))
        take("MLTRACE_METRICS_PORT", "metrics_port", lambda n, v: parse_int(n, v, 0))
        take("MLTRACE_TOKEN", "token", text)
        take("MLTRACE_SERVER_URL", "server_url", text)
        take("MLTRACE_MAX_BODY_BYTES", "max_body_bytes", lambda n, v: parse_int(n, v, 1024))
        take("MLTRACE_QUEUE_SPANS", "queue_spans", lambda n, v: parse_int(n, v, 1))
        take("MLTRACE_BATCH_ROWS", "batch_rows", lambda n, v: parse_int(n, v, 1))
        take("MLTRACE_BATCH_DELAY_S", "batch_delay_s", lambda n, v: parse_float(n, v, 0))
        take("MLTRACE_NATIVE_INGEST", "native_ingest", parse_bool)
        take("MLTRACE_ACK", "ack", choice(_ACKS))
        take("MLTRACE_INDEX_SPANS", "index_spans", lambda n, v: parse_int(n, v, 1))
        take("MLTRACE_METRICS_LABEL_CAP", "metrics_label_cap", lambda n, v: parse_int(n, v, 1))
        take("MLTRACE_STOP_GRACE_S", "stop_grace_s", lambda n, v: parse_float(n, v, 0))
        take("MLTRACE_FORWARD_OTLP_ENDPOINTS", "forward_targets", parse_forward_targets)
        take("MLTRACE_FORWARD_QUEUE_SPANS", "forward_queue_spans", lambda n, v: parse_int(n, v, 1))

        db_uri = (env.get("DB_URI") or "").strip()
        if db_uri:  # mltrace's variable: its SQL URLs are ignored (warned), ours are a store URL
            if is_sqlalchemy_url(db_uri):
                _warn_sql_url("DB_URI", db_uri)
            elif "store_url" not in kw:
                take("DB_URI", "store_url", parse_store_url)

        db_server = (env.get("DB_SERVER") or "").strip()
        if db_server:  # mltrace's variable: one host for both export and queries
            kw.setdefault("store_url", f"http://{db_server}:8123")
            if "otlp_traces_endpoint" not in kw:
                kw.setdefault("otlp_endpoint", f"http://{db_server}:4318")

        for k, v in overrides.items():
            if v is not None:
                if k == "store_url":
                    v = parse_store_url("store URL", str(v))
                kw[k] = v
        return cls(**kw)  # type: ignore[arg-type]
