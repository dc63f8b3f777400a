"""What every ``mltrace`` command shares: the error wrapper, the store context, output helpers.

:class:`MltraceGroup` is the ONE place where :class:`~mltrace_otel.errors.MltraceError` becomes
``error: ...`` + ``hint: ...`` on stderr and exit code 1. :func:`open_cli_queries` gives the
query commands the HTTP API's client (``--server``, or the API that the process holding the
embedded store announces) or the store's queries;
:func:`open_cli_store` opens the configured store and turns any failure to reach it into a
StoreUnavailable that names the (masked) URL and what to check. Rich and the store are
imported inside the functions, so importing this module (``mltrace --help``) stays cheap.

May import: mltrace_otel.settings, .errors, .store, .shapes and .client (lazily), .cli.render and rich
(lazily), typer.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

import typer
from typer._click.exceptions import MissingParameter
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

from mltrace_otel.errors import (
    AmbiguousRunId,
    ConfigError,
    MltraceError,
    StoreUnavailable,
    extra_of,
    missing_extra,
)
from mltrace_otel.settings import Settings, mask_url

if TYPE_CHECKING:  # pragma: no cover
    from rich.console import Console

    from mltrace_otel.client import ApiClient
    from mltrace_otel.shapes import StoreQueries
    from mltrace_otel.store.core import Store


class MltraceGroup(TyperGroup):
    """The one place where errors become output: MltraceError → ``error: ...`` + hint, exit 1;
    an import of a module that an extra installs (chDB, Dash, ...) → one line naming the extra.

    Also lets ``--store URL`` and ``--server URL`` follow the command (``mltrace recent --store
    URL``), as people type it.
    """

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, hoist_store(args))

    def get_params(self, ctx: typer.Context) -> list[Any]:
        params = super().get_params(ctx)
        for p in params:  # --help without <bool>, as in the commands (MltraceCommand)
            _plain(p)
        return params

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MissingParameter as e:  # the same line and exit code as a command's own errors
            print_error(missing_argument(e))
            raise typer.Exit(1) from None
        except MltraceError as e:
            print_error(e)
            raise typer.Exit(1) from None
        except ModuleNotFoundError as e:  # a part of an extra that is not installed: say which
            extra = extra_of(e)
            if extra is None:
                raise
            print_error(missing_extra(f"mltrace {ctx.invoked_subcommand or ''}".strip(), extra, e.name))
            raise typer.Exit(1) from None


class PlainArgument(TyperArgument):
    """An argument shown by its metavar alone: ``RUN_ID``, not ``{RUN_ID}`` in the usage line
    and ``RUN_ID <str>`` in the help (every argument has a metavar that says what it is)."""

    def display_type_rich(self, ctx: typer.Context) -> str | None:
        return None

    def _usage_display_name(self) -> str:
        name = self.display_name_raw if self.required else f"[{self.display_name_raw}]"
        return name + ("..." if self.nargs != 1 else "")


class PlainFlag(TyperOption):
    """A flag (``--json``, ``--yes``) shown without a ``<bool>`` placeholder: it takes no value."""

    def display_type_rich(self, ctx: typer.Context) -> str | None:
        return None


def _plain(param: object) -> None:
    if type(param) is TyperArgument:
        param.__class__ = PlainArgument
    elif type(param) is TyperOption and param.is_flag:  # type: ignore[attr-defined]
        param.__class__ = PlainFlag


class MltraceCommand(TyperCommand):
    """Every ``mltrace`` command: help without typer's ``<bool>`` placeholders on flags and
    ``{NAME}`` / ``<str>`` around arguments (:class:`PlainArgument`, :class:`PlainFlag`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for p in self.params:
            _plain(p)

    def get_params(self, ctx: typer.Context) -> list[Any]:
        params = super().get_params(ctx)
        for p in params:  # the help option is made here
            _plain(p)
        return params


def missing_argument(e: MissingParameter) -> ConfigError:
    """click's missing-argument error as the CLI's own: ``error: missing argument RUN_ID`` and
    the command's usage as the hint."""
    name = getattr(e.param, "display_name_raw", None) or getattr(e.param, "name", None) or "argument"
    usage = e.ctx.get_usage().strip() if e.ctx is not None else ""
    path = e.ctx.command_path if e.ctx is not None else "mltrace"
    hint = f"{usage[:1].lower()}{usage[1:]} (see {path} --help)" if usage else None
    return ConfigError(f"missing argument {name}", hint=hint)


def print_error(e: MltraceError) -> None:
    """``error: message`` and ``hint: ...`` on stderr; control characters in them (messages
    quote user input) are shown escaped (:func:`~mltrace_otel.cli.render.clean`)."""
    from rich.console import Console
    from rich.text import Text

    from mltrace_otel.cli.render import clean

    err = Console(stderr=True, highlight=False, soft_wrap=True)
    err.print(Text(f"error: {clean(e.message, multiline=True)}", style="bold red"))
    if e.hint:
        err.print(Text(f"hint: {clean(e.hint, multiline=True)}", style="dim"))


def cli_settings(ctx: typer.Context) -> Settings:
    obj = ctx.find_root().obj
    return obj if isinstance(obj, Settings) else Settings.from_env()


@contextmanager
def open_cli_queries(ctx: typer.Context) -> Iterator[StoreQueries | ApiClient]:
    """What the query commands ask (:func:`open_queries` on the command's settings)."""
    with open_queries(cli_settings(ctx)) as q:
        yield q


@contextmanager
def open_queries(settings: Settings) -> Iterator[StoreQueries | ApiClient]:
    """The HTTP API of the server given by ``--server`` / ``MLTRACE_SERVER_URL`` (with
    ``MLTRACE_TOKEN``); else the API announced by the live process that holds the embedded
    store (also when it announces it while this one waits for the store); else the
    configured store, opened here (and closed afterwards)."""
    from mltrace_otel.client import client_for

    client = client_for(settings)
    if client is None:
        try:
            store = _open_store(settings)
        except StoreUnavailable:
            client = client_for(settings)
            if client is None:
                raise
    if client is not None:
        yield client
        return
    from mltrace_otel.shapes import StoreQueries

    with _using(store):
        yield StoreQueries(store)


@contextmanager
def open_cli_store(ctx: typer.Context) -> Iterator[Store]:
    """Open the configured store (drains the local spool) and close it afterwards.

    Any failure to open becomes a StoreUnavailable naming the (masked) URL and what to check.
    Commands that need the store itself (clear, migrate) refuse ``--server``.
    """
    settings = cli_settings(ctx)
    if settings.server_url:
        raise ConfigError("this command works on a store, not through --server / MLTRACE_SERVER_URL",
                          hint="run it where the store is, or give --store URL")
    store = _open_store(settings)
    with _using(store):
        yield store


def _open_store(settings: Settings) -> Store:
    url = mask_url(settings.resolved_store_url)
    if settings.is_embedded:
        check = ("check that MLTRACE_DIR is writable and that no other process (mltrace server, "
                 "ui) holds the embedded store for longer than MLTRACE_STORE_WAIT_S")
    else:
        check = ("check that the ClickHouse server is running and reachable, and the URL given by "
                 "--store or MLTRACE_CLICKHOUSE_URL (host, port, user, password, database)")
    from mltrace_otel.store import open_store

    try:
        store = open_store(settings)
    except StoreUnavailable as e:
        msg = e.message if url in e.message else f"cannot open the store at {url}: {e.message}"
        raise StoreUnavailable(msg, hint=e.hint or check) from None
    except MltraceError:
        raise
    except Exception as e:  # a driver error the store did not map: still one clear line
        raise StoreUnavailable(f"cannot open the store at {url}: {type(e).__name__}: {e}",
                               hint=check) from None
    return store


@contextmanager
def _using(store: Store) -> Iterator[Store]:
    try:
        yield store
    except AmbiguousRunId as e:
        describe_candidates(store, e)
        raise
    finally:
        store.close()


def describe_candidates(store: Store, e: AmbiguousRunId) -> None:
    """Name each candidate of an ambiguous prefix with its component and start (one query)."""
    from mltrace_otel.cli.render import clean, format_time

    try:
        runs = {r.id: r for r in store.get_runs(e.candidates[:20])}
    except MltraceError:
        return  # keep the plain list of ids
    lines = [f"run id prefix {e.prefix!r} matches {e.count} runs:"]
    for rid in e.candidates[:20]:
        r = runs.get(rid)
        lines.append(f"  {rid}  {clean(r.component)}  {format_time(r.start)}" if r else f"  {rid}")
    if len(e.candidates) > 20 or e.more:
        lines.append("  … and more" if e.more else f"  … and {len(e.candidates) - 20} more")
    e.message = "\n".join(lines)


def console() -> Console:
    from rich.console import Console

    return Console(highlight=False)


def emit_json(data: Any) -> None:
    """``data`` as indented JSON on stdout. Non-ASCII text stays readable (``ensure_ascii=False``),
    but DEL, C1 and bidi controls are ``\\uXXXX`` like the C0 controls json.dumps escapes itself:
    ``mltrace ... --json`` shown in a terminal writes no control character raw."""
    from mltrace_otel.cli.render import json_safe

    typer.echo(json_safe(json.dumps(data, indent=2, ensure_ascii=False)))


def friendly(message: str, *, wrap: bool = True) -> None:
    """Zero results: a friendly line, exit code 0 (user input in it is shown escaped).
    ``wrap=False``: one line whatever the terminal's width (a command to copy and run)."""
    from rich.text import Text

    from mltrace_otel.cli.render import clean

    console().print(Text(clean(message), style="dim"), soft_wrap=not wrap)


def parse_when(option: str, value: str | None) -> datetime | None:
    """A --since/--until value as an aware UTC datetime (:func:`mltrace_otel.shapes.parse_when`:
    ISO dates and times, local time unless a zone is given, or ages such as ``12h`` / ``7d`` ago; a
    date alone as ``--until`` is the end of that day)."""
    if value is None:
        return None
    from mltrace_otel.shapes import parse_when as when

    try:
        return when(value, end=option == "--until", local=True)
    except ValueError:  # not a date, or out of datetime's range (year 1-9999)
        raise ConfigError(f"{option} {value!r} is not a date, time or age",
                          hint="use e.g. 2026-11-01, 2026-11-01T09:30, 12h or 7d") from None


def positive(n: int) -> int:
    if n < 1:
        raise ConfigError(f"-n {n} is not a positive number", hint="use -n 1 or more")
    return n


def hoist_store(args: list[str]) -> list[str]:
    """Move every ``--store URL`` / ``--store=URL`` (and ``--server``) before the command
    (nothing after ``--``)."""
    cut = args.index("--") if "--" in args else len(args)
    head, tail = args[:cut], args[cut:]
    hoisted: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(head):
        a = head[i]
        if a in ("--store", "--server") and i + 1 < len(head):
            hoisted += head[i:i + 2]
            i += 2
            continue
        (hoisted if a.startswith(("--store=", "--server=")) else rest).append(a)
        i += 1
    return hoisted + rest + tail
