"""The ClickHouse of the compose deployment runs every code path (issue 21, items 1 and 5).

- The server image docker-compose.yaml pins is at least ``MIN_CLICKHOUSE_VERSION``, the one
  place the code declares it; and every setting the native insert sends is either long-standing
  or listed in ``SETTINGS_SINCE`` with a release no newer than that minimum. Source of the
  releases: ClickHouse ``src/Core/SettingsChangesHistory.cpp`` (``format_schema_source`` and
  ``format_schema_message_name`` under "25.6", ``input_format_protobuf_oneof_presence`` under
  "25.9"). On the old files the image was 25.8: that test fails.
- The native path is chosen by the server's version (``SELECT version()`` once per store), not by
  an error's text: a 25.8 server gets spans rendered in Python without a failed insert first.
  On the old code the insert was sent and clickhouse-connect's ProgrammingError("Setting ... is
  unknown or readonly") was re-raised (it matched neither UNKNOWN_SETTING nor
  format_schema_source): that test fails.
- A password with ``/ ? # @ :`` percent-encoded in MLTRACE_CLICKHOUSE_URL reaches the driver
  decoded (it did not).

Docker does not run here: the image's version is read from the compose file, not from a server.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from mltrace_otel.errors import QueryError
from mltrace_otel.store import connect, ingest, otlp_native

ROOT = Path(__file__).resolve().parents[1]

# settings every supported server has had for years (insert_deduplication_token: 22.2)
LONG_STANDING = {
    "async_insert",
    "optimize_on_insert",
    "insert_deduplication_token",
    "max_block_size",
    "format_schema",
}


def compose_clickhouse_version() -> tuple[int, ...]:
    compose = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())
    image = compose["services"]["clickhouse"]["image"]
    name, _, tag = image.partition(":")
    assert name == "clickhouse/clickhouse-server", image
    assert re.fullmatch(r"\d+\.\d+(\.\d+)*", tag), f"pin a numbered release, not {tag!r}"
    return otlp_native.parse_version(tag)


def test_compose_pins_a_clickhouse_with_every_setting_our_sql_sends() -> None:
    assert compose_clickhouse_version() >= otlp_native.MIN_CLICKHOUSE_VERSION
    assert otlp_native.MIN_CLICKHOUSE_VERSION == max(otlp_native.SETTINGS_SINCE.values())


def one_request() -> bytes:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    sp = rs.scope_spans.add().spans.add()
    sp.trace_id, sp.span_id, sp.name = b"\x01" * 16, b"\x02" * 8, "run"
    sp.start_time_unix_nano, sp.end_time_unix_nano = 1_700_000_000_000_000_000, 1_700_000_001_000_000_000
    return req.SerializeToString()


class FakeServer:
    """A server-store stand-in that records what the ingest code sends."""

    def __init__(self, version: str, refuse: Exception | None = None) -> None:
        self.url = f"http://u:p@fake-{version}-{id(self)}:8123/db"
        self.database = "db"
        self.settings = type("S", (), {"is_embedded": False})()
        self.version = version
        self.refuse = refuse
        self.inserts: list[tuple[str, str, dict[str, Any]]] = []
        self.queries: list[str] = []

    def query(self, name: str, sql: str, parameters: dict | None = None, **_: Any) -> list[tuple]:
        self.queries.append(name)
        if name == "server_version":
            return [(self.version,)]
        return []

    def command(self, name: str, sql: str, parameters: dict | None = None) -> None:
        pass

    def insert_body(
        self,
        name: str,
        table: str,
        body: bytes,
        *,
        fmt: str,
        columns: Any = None,
        settings: dict[str, Any] | None = None,
    ) -> None:
        self.inserts.append((name, table, dict(settings or {})))
        if table == otlp_native.NULL_TABLE and self.refuse is not None:
            raise QueryError(name, {}, str(self.refuse)) from self.refuse


def test_every_setting_of_the_native_insert_exists_from_the_minimum_version() -> None:
    server = FakeServer("25.9.1.1")
    otlp_native.insert_requests(server, [one_request()])
    ((name, table, sent),) = [i for i in server.inserts if i[1] == otlp_native.NULL_TABLE]
    unknown = set(sent) - LONG_STANDING - set(otlp_native.SETTINGS_SINCE)
    assert not unknown, f"declare the release of {unknown} in otlp_native.SETTINGS_SINCE"
    assert all(v <= otlp_native.MIN_CLICKHOUSE_VERSION for v in otlp_native.SETTINGS_SINCE.values())
    assert set(ingest.INSERT_SETTINGS) <= LONG_STANDING


def test_the_settings_are_real_setting_names(store) -> None:
    """Typos would pass the check above: the embedded engine (a newer ClickHouse) knows them all."""
    names = sorted(LONG_STANDING | set(otlp_native.SETTINGS_SINCE))
    rows = store.query(
        "settings", "SELECT name FROM system.settings WHERE name IN {n:Array(String)}", {"n": names}
    )
    assert {r[0] for r in rows} == set(names)


def test_an_older_server_is_detected_by_version_before_any_native_insert() -> None:
    from clickhouse_connect.driver.exceptions import ProgrammingError

    server = FakeServer(
        "25.8.4.13",
        refuse=ProgrammingError("Setting input_format_protobuf_oneof_presence is unknown or readonly"),
    )
    result = otlp_native.insert_requests(server, [one_request()])
    assert result.accepted == 1
    assert [t for _, t, _ in server.inserts] == [ingest.TABLE]  # rendered in Python, never refused
    otlp_native.insert_requests(server, [one_request()])
    assert server.queries.count("server_version") == 1  # asked once per store


def test_a_refused_setting_falls_back_by_error_type_not_text() -> None:
    from clickhouse_connect.driver.exceptions import ProgrammingError

    server = FakeServer("25.9.2.1", refuse=ProgrammingError("no recognisable text here"))
    result = otlp_native.insert_requests(server, [one_request()])
    assert result.accepted == 1
    assert [t for _, t, _ in server.inserts] == [otlp_native.NULL_TABLE, ingest.TABLE]
    otlp_native.insert_requests(server, [one_request()])
    assert [t for _, t, _ in server.inserts][-1] == ingest.TABLE  # remembered: Python from now on


def test_other_insert_errors_are_not_swallowed() -> None:
    server = FakeServer("25.9.2.1", refuse=RuntimeError("Code: 241. MEMORY_LIMIT_EXCEEDED"))
    with pytest.raises(QueryError):
        otlp_native.insert_requests(server, [one_request()])


@pytest.mark.parametrize(
    "text,version",
    [
        ("25.9.2.1", (25, 9, 2, 1)),
        ("25.10.1.3832-stable", (25, 10, 1, 3832)),
        ("26.9.2.1", (26, 9, 2, 1)),
        ("weird", ()),
    ],
)
def test_parse_version(text: str, version: tuple[int, ...]) -> None:
    assert otlp_native.parse_version(text) == version


def test_percent_encoded_credentials_reach_the_driver_decoded(monkeypatch) -> None:
    import clickhouse_connect

    seen: dict[str, Any] = {}

    def get_client(**kw: Any) -> object:
        seen.update(kw)
        return object()

    monkeypatch.setattr(clickhouse_connect, "get_client", get_client)
    conn = connect._connect_http("http://ml%40team:p%2Fa%3Fs%23s%3Aw%25rd@clickhouse:8123/mltrace")
    assert seen["username"] == "ml@team"
    assert seen["password"] == "p/a?s#s:w%rd"
    assert seen["host"] == "clickhouse" and seen["port"] == 8123
    assert conn.url.endswith("/mltrace")
