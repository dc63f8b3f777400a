"""The client of the HTTP query API (``/api/v1`` of ``mltrace server`` / ``mltrace ui``).

:class:`ApiClient` has the methods of :class:`mltrace_otel.shapes.StoreQueries` and returns the
same result types (rebuilt with ``from_json``), so the CLI with ``--server URL`` (or
``MLTRACE_SERVER_URL``) asks a shared server the way it asks a store it opened itself, the way
MLflow users set a tracking URI; :func:`client_for` also finds the API announced by the process
that holds the embedded store on this machine. The server's error bodies come back as the same errors
(NotFound with the server's message, AmbiguousRunId, ConfigError); a server that cannot be
reached, or refuses the token, is StoreUnavailable naming the URL.

Standard library only (http.client): the SDK-only install can use it.

May import: .shapes, .store.models, .errors, .settings, .store.connect (lazily).
"""

from __future__ import annotations

import http.client
import json
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from mltrace_otel import shapes
from mltrace_otel.errors import AmbiguousRunId, ConfigError, MltraceError, NotFound, StoreUnavailable
from mltrace_otel.settings import Settings, mask_url
from mltrace_otel.store.models import ComponentInfo, Lineage, PointerInfo, Review, Run, RunPage

API_PREFIX = "/api/v1"  # the same as mltrace_otel.web_api.API_PREFIX (not imported: no flask here)
_ERRORS: dict[str, type[MltraceError]] = {"NotFound": NotFound, "ConfigError": ConfigError,
                                          "ApiError": ConfigError, "StoreUnavailable": StoreUnavailable}


class ApiClient:
    """The questions of :class:`~mltrace_otel.shapes.StoreQueries`, asked of a server over HTTP.

    Args:
        url: the server's base URL (``http://host:8050``; a trailing ``/api/v1`` is accepted).
        token: sent as ``Authorization: Bearer <token>`` when set (MLTRACE_TOKEN).
        timeout_s: per request.

    Raises:
        ConfigError: the URL is not http(s)://host[:port][/path].
    """

    remote = True

    def __init__(self, url: str, token: str | None = None, timeout_s: float = 120.0) -> None:
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"server URL {mask_url(url)!r} is not http(s)://host[:port]",
                              hint="e.g. --server http://mltrace.internal:8050 (MLTRACE_SERVER_URL)")
        self.url = url.strip()
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        base = parts.path.rstrip("/")
        self._base = base if base.endswith(API_PREFIX) else base + API_PREFIX
        self._token = token
        self._timeout = timeout_s

    # --- transport ------------------------------------------------------------------------
    def call(self, method: str, path: str, params: dict[str, Any] | None = None,
             body: dict[str, Any] | None = None) -> Any:
        """One request; the parsed JSON answer, or the server's error raised as ours."""
        return self._request(method, path, params, body)[0]

    def _request(self, method: str, path: str, params: dict[str, Any] | None = None,
                 body: dict[str, Any] | None = None) -> tuple[Any, Any]:
        """One request: (the parsed JSON answer, the response headers)."""
        query = {k: _param(v) for k, v in (params or {}).items() if v is not None}
        target = self._base + path + (f"?{urlencode(query)}" if query else "")
        headers = {"Accept": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        where = mask_url(self.url)
        for attempt in (0, 1):
            conn = cls(self._host, self._port, timeout=self._timeout)
            try:
                conn.request(method, target, body=data, headers=headers)
                resp = conn.getresponse()
                raw = resp.read()
                break
            except ConnectionResetError:  # a dropped connection: a question is asked again once
                if attempt or method != "GET":
                    raise self._unreachable(where, "the connection was reset") from None
            except OSError as e:
                raise self._unreachable(where, e) from None
            finally:
                conn.close()
        try:
            answer = json.loads(raw) if raw else None
        except ValueError:
            answer = None
        if resp.status == 200 and answer is not None:
            return answer, resp.headers
        raise _error(resp.status, answer, where)

    @staticmethod
    def _unreachable(where: str, why: object) -> StoreUnavailable:
        return StoreUnavailable(f"cannot reach the mltrace server at {where}: {why}",
                                hint="check that `mltrace server` or `mltrace ui` runs there, "
                                     "and --server / MLTRACE_SERVER_URL")

    # --- the questions --------------------------------------------------------------------
    def recent(self, limit: int, before: str | None = None,
               where: shapes.RecentFilter | None = None) -> list[Run]:
        """The newest runs matching ``where``."""
        return list(self.recent_page(limit, before, where).runs)

    def recent_page(self, limit: int, before: str | None = None,
                    where: shapes.RecentFilter | None = None) -> RunPage:
        """The newest runs matching ``where`` and where older ones start (the ``before`` of the
        answer's ``Link: <...>; rel="next"`` header)."""
        params = {"limit": limit, "before": before, **(where or shapes.RecentFilter()).kwargs()}
        data, headers = self._request("GET", "/recent", params)
        nxt = next((u for u, rel in _links(headers.get_all("Link") or ()) if rel == "next"), None)
        after = parse_qs(urlsplit(nxt).query).get("before", [""])[-1] if nxt else ""
        return RunPage(tuple(_runs(data)), nxt is not None, after)

    def history(self, component: str, limit: int, since: datetime | None = None,
                until: datetime | None = None) -> list[Run]:
        """A component's runs."""
        return _runs(self.call("GET", "/history", {"component": component, "limit": limit,
                                                   "since": since, "until": until}))

    def inspect(self, run_id: str) -> Run:
        """One run, everything about it."""
        return Run.from_json(self.call("GET", "/inspect", {"run": run_id}))

    def tagged(self, tag: str, limit: int) -> list[Run]:
        """The newest runs of the components with a tag."""
        return _runs(self.call("GET", "/tag", {"tag": tag, "limit": limit}))

    def trace(self, output: str | None = None, run: str | None = None) -> Lineage:
        """Upstream of an output or a run."""
        shapes.check_trace(output, run)
        return Lineage.from_json(self.call("GET", "/trace", {"output": output, "run": run}))

    def impact(self, target: str) -> Lineage:
        """Downstream of an output or a run."""
        return Lineage.from_json(self.call("GET", "/impact", {"target": target}))

    def stale(self, component: str | None, limit: int, direct: bool = False) -> list[Run]:
        """The stale runs."""
        return _runs(self.call("GET", "/stale", {"component": component, "limit": limit,
                                                 "direct": direct}))

    def review(self, limit: int | None = None, since: datetime | None = None,
               component: str | None = None, tag: str | None = None) -> Review:
        """The review."""
        return Review.from_json(self.call("GET", "/review", {"limit": limit, "since": since,
                                                             "component": component, "tag": tag}))

    def components(self, owner: str | None = None, tag: str | None = None) -> list[ComponentInfo]:
        """Components."""
        return [ComponentInfo.from_json(c) for c in self.call("GET", "/components",
                                                               {"owner": owner, "tag": tag})]

    def tags(self) -> list[str]:
        """Every tag."""
        return list(self.call("GET", "/tags"))

    def pointer(self, name: str) -> PointerInfo:
        """An IO pointer, its writers and readers."""
        return PointerInfo.from_json(self.call("GET", "/pointer", {"name": name}))

    def flag(self, outputs: Sequence[str], run: str | None = None) -> shapes.FlagChange:
        """Flag outputs."""
        return shapes.flag_change_from_json(
            self.call("POST", "/flag", body={"outputs": list(outputs), "run": run}), "flagged")

    def unflag(self, outputs: Sequence[str] = (), all_: bool = False,
               run: str | None = None) -> shapes.FlagChange:
        """Unflag outputs or all."""
        shapes.check_unflag(outputs, all_, run)
        return shapes.flag_change_from_json(
            self.call("POST", "/unflag", body={"outputs": list(outputs), "all": all_, "run": run}),
            "unflagged")

    def create_component(self, name: str, description: str = "", owner: str = "",
                         tags: Sequence[str] = ()) -> ComponentInfo:
        """Create a component or update its metadata (mltrace's create_component)."""
        return ComponentInfo.from_json(self.call("POST", "/components", body={
            "name": name, "description": description, "owner": owner, "tags": list(tags)}))

    def tag_component(self, name: str, tags: Sequence[str]) -> ComponentInfo:
        """Add tags to a component; NotFound when it does not exist."""
        return ComponentInfo.from_json(self.call("POST", "/components/tags",
                                                 body={"component": name, "tags": list(tags)}))

    def notes(self, run_id: str, text: str) -> tuple[str, str]:
        """Replace a run's notes: (full id, notes)."""
        data = self.call("POST", "/notes", body={"run": run_id, "notes": text})
        return data["run"], data["notes"]


def client_for(settings: Settings) -> ApiClient | None:
    """The API to ask instead of opening the store: the server given by ``--server`` /
    ``MLTRACE_SERVER_URL`` (with ``MLTRACE_TOKEN``), else the query API that the live process
    holding the settings' embedded store announces (with its token); None: open the store."""
    if settings.server_url:
        return ApiClient(settings.server_url, settings.token)
    if not settings.is_embedded:
        return None
    from mltrace_otel.store.connect import announced

    found = announced(settings)
    return ApiClient(found.url, found.token or None) if found else None


def _param(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, datetime):
        return v.isoformat()
    return str(v)


_LINK = re.compile(r'<([^>]*)>\s*;\s*rel="?([^";,]+)"?')


def _links(values: Sequence[str]) -> list[tuple[str, str]]:
    """(url, rel) of each link in ``Link`` header values (RFC 8288)."""
    return [(m.group(1), m.group(2)) for v in values for m in _LINK.finditer(v)]


def _runs(data: Any) -> list[Run]:
    return [Run.from_json(r) for r in data]


def _error(status: int, answer: Any, where: str) -> MltraceError:
    err = answer.get("error") if isinstance(answer, dict) else None
    if not isinstance(err, dict):
        return StoreUnavailable(f"the mltrace server at {where} answered HTTP {status}, not the API",
                                hint="is that the address of `mltrace server` / `mltrace ui`?")
    message, hint, kind = str(err.get("message", "")), err.get("hint"), err.get("type")
    if status == 401:
        return StoreUnavailable(f"the mltrace server at {where} needs the token: {message}",
                                hint="set MLTRACE_TOKEN to the server's token")
    if kind == "AmbiguousRunId":
        return AmbiguousRunId(str(err.get("prefix", "")), list(err.get("candidates") or []),
                              more=bool(err.get("more")))
    return _ERRORS.get(str(kind), MltraceError)(message, hint)
