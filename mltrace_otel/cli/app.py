"""The ``mltrace`` command: triage at a terminal, and JSON for scripts.

One :class:`~mltrace_otel.settings.Settings` is built in the callback (``--store`` beats
``MLTRACE_CLICKHOUSE_URL`` beats the embedded store under ``MLTRACE_DIR``) and passed down.
Errors are turned into one red line, a hint and exit code 1 in ONE place,
:class:`_MltraceGroup.invoke`; commands just raise :class:`~mltrace_otel.errors.MltraceError`.

Every query command takes ``--json`` and prints the store models' ``to_json()`` (shapes in
docs/cli.md). Heavy modules (the store, chDB, rich rendering, the collector, dash) are imported
inside the commands so that ``mltrace --help`` stays fast.

May import: mltrace_otel.settings, .errors, .store, .sdk (demo), .collector, .dashboards.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Optional

import typer
from typer.core import TyperGroup

from mltrace_otel.errors import AmbiguousRunId, ConfigError, MltraceError, NotFound, StoreUnavailable
from mltrace_otel.settings import Settings, mask_url

if TYPE_CHECKING:  # pragma: no cover
    from rich.console import Console

    from mltrace_otel.store.core import Store


class _MltraceGroup(TyperGroup):
    """The one place where errors become output: MltraceError → ``error: ...`` + hint, exit 1."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MltraceError as e:
            _print_error(e)
            raise typer.Exit(1) from None


def _print_error(e: MltraceError) -> None:
    from rich.console import Console
    from rich.text import Text

    err = Console(stderr=True, highlight=False, soft_wrap=True)
    err.print(Text(f"error: {e.message}", style="bold red"))
    if e.hint:
        err.print(Text(f"hint: {e.hint}", style="dim"))


app = typer.Typer(
    name="mltrace",
    cls=_MltraceGroup,
    help="mltrace-otel: trace, review and check the staleness of ML pipeline runs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

JsonOpt = typer.Option(False, "--json", help="Print JSON (stable shape, see docs/cli.md).")


@app.callback()
def _main(
    ctx: typer.Context,
    store: Optional[str] = typer.Option(
        None, "--store", metavar="URL",
        help="Store URL: chdb:///DIR (embedded) or http(s)://user:pass@host:8123/db. "
             "Default: MLTRACE_CLICKHOUSE_URL, else the embedded store under MLTRACE_DIR.",
    ),
) -> None:
    """mltrace-otel: trace, review and check the staleness of ML pipeline runs."""
    ctx.obj = Settings.from_env(store_url=store)


# --- helpers ---------------------------------------------------------------------------------
def _settings(ctx: typer.Context) -> Settings:
    obj = ctx.find_root().obj
    return obj if isinstance(obj, Settings) else Settings.from_env()


@contextmanager
def _store(ctx: typer.Context) -> Iterator[Store]:
    """Open the configured store (drains the local spool) and close it afterwards.

    Any failure to open becomes a StoreUnavailable naming the (masked) URL and what to check.
    """
    settings = _settings(ctx)
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
    try:
        yield store
    except AmbiguousRunId as e:
        _describe_candidates(store, e)
        raise
    finally:
        store.close()


def _describe_candidates(store: Store, e: AmbiguousRunId) -> None:
    """Name each candidate of an ambiguous prefix with its component and start (one query)."""
    from mltrace_otel.cli.render import format_time

    try:
        runs = {r.id: r for r in store.get_runs(e.candidates[:20])}
    except MltraceError:
        return  # keep the plain list of ids
    lines = [f"run id prefix {e.prefix!r} matches {len(e.candidates)} runs:"]
    for rid in e.candidates[:20]:
        r = runs.get(rid)
        lines.append(f"  {rid}  {r.component}  {format_time(r.start)}" if r else f"  {rid}")
    if len(e.candidates) > 20:
        lines.append(f"  … and {len(e.candidates) - 20} more")
    e.message = "\n".join(lines)


def _console() -> Console:
    from rich.console import Console

    return Console(highlight=False)


def _emit_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


def _friendly(message: str) -> None:
    """Zero results: a friendly line, exit code 0."""
    _console().print(f"[dim]{message}[/dim]")


_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.I)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_when(option: str, value: str | None) -> datetime | None:
    """A --since/--until value as an aware UTC datetime.

    Accepts ISO dates and times (``2026-11-01``, ``2026-11-01T09:30``; local time unless a zone
    is given) and ages (``30m``, ``12h``, ``7d``, ``2w`` ago).
    """
    if value is None:
        return None
    m = _RELATIVE.match(value)
    if m:
        return datetime.now(timezone.utc) - timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2).lower()])
    try:
        dt = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ConfigError(f"{option} {value!r} is not a date, time or age",
                          hint="use e.g. 2026-11-01, 2026-11-01T09:30, 12h or 7d") from None
    if dt.tzinfo is None:
        dt = dt.astimezone()  # local time
    return dt.astimezone(timezone.utc)


def _limit(n: int) -> int:
    if n < 1:
        raise ConfigError(f"-n {n} is not a positive number", hint="use -n 1 or more")
    return n


# --- runs ------------------------------------------------------------------------------------
@app.command()
def recent(
    ctx: typer.Context,
    n: int = typer.Option(10, "-n", "--limit", metavar="N", help="How many runs."),
    before: Optional[str] = typer.Option(None, "--before", metavar="RUN_ID",
                                         help="Page past this run (id or unique prefix)."),
    as_json: bool = JsonOpt,
) -> None:
    """The newest runs of any component, newest first."""
    from mltrace_otel.cli import render

    with _store(ctx) as store:
        before_id = store.resolve_run_id(before) if before else None
        runs = store.recent(_limit(n), before_id)
    if as_json:
        return _emit_json([r.to_json() for r in runs])
    if not runs:
        return _friendly("No runs yet. Decorate a function with @Component.run, or try `mltrace demo`.")
    _console().print(render.runs_table(runs, title="Recent runs"))
    if len(runs) == n:
        _friendly(f"more: mltrace recent -n {n} --before {runs[-1].id[:8]}")


@app.command()
def history(
    ctx: typer.Context,
    component: str = typer.Argument(..., metavar="COMPONENT", help="Component name."),
    n: int = typer.Option(10, "-n", "--limit", metavar="N", help="How many runs."),
    since: Optional[str] = typer.Option(None, "--since", metavar="WHEN",
                                        help="Started at or after (2026-11-01, 7d)."),
    until: Optional[str] = typer.Option(None, "--until", metavar="WHEN",
                                        help="Started at or before (2026-11-28T12:00, 1h)."),
    as_json: bool = JsonOpt,
) -> None:
    """A component's runs, newest first."""
    from mltrace_otel.cli import render

    lo, hi = parse_when("--since", since), parse_when("--until", until)
    with _store(ctx) as store:
        runs = store.history(component, _limit(n), lo, hi)
        if not runs:
            store.component(component)  # NotFound for an unknown component
    if as_json:
        return _emit_json([r.to_json() for r in runs])
    if not runs:
        return _friendly(f"{component} has no runs in that window.")
    _console().print(render.runs_table(runs, title=f"History of {component}"))


@app.command()
def inspect(
    ctx: typer.Context,
    run_id: str = typer.Argument(..., metavar="RUN_ID", help="Run id or unique prefix (>= 4 chars)."),
    as_json: bool = JsonOpt,
) -> None:
    """Everything about one run: IO, code, git, tests, notes, staleness."""
    from mltrace_otel.cli import render

    with _store(ctx) as store:
        run = store.get_run(run_id)
    if as_json:
        return _emit_json(run.to_json())
    console = _console()
    for part in render.run_detail(run):
        console.print(part)


@app.command()
def tag(
    ctx: typer.Context,
    tag_name: str = typer.Argument(..., metavar="TAG", help="A component tag."),
    n: int = typer.Option(10, "-n", "--limit", metavar="N", help="How many runs."),
    as_json: bool = JsonOpt,
) -> None:
    """The newest runs of the components with this tag."""
    from mltrace_otel.cli import render

    limit = _limit(n)
    with _store(ctx) as store:
        comps = store.components(tag=tag_name)
        if not comps:
            raise NotFound(f"no component has the tag {tag_name!r}", hint="`mltrace tags` lists them")
        runs = [r for c in comps for r in store.history(c.name, limit)]
    runs.sort(key=lambda r: (r.start, r.id), reverse=True)
    runs = runs[:limit]
    if as_json:
        return _emit_json([r.to_json() for r in runs])
    if not runs:
        return _friendly(f"The components tagged {tag_name!r} have no runs yet.")
    _console().print(render.runs_table(runs, title=f"Runs tagged {tag_name}"))


# --- lineage ---------------------------------------------------------------------------------
@app.command()
def trace(
    ctx: typer.Context,
    output: Optional[str] = typer.Argument(None, metavar="OUTPUT", help="An output pointer name."),
    run: Optional[str] = typer.Option(None, "--run", metavar="RUN_ID",
                                      help="Trace upstream of this run instead of an output."),
    as_json: bool = JsonOpt,
) -> None:
    """The runs that produced an output, as a tree (each run once, stale and failed runs marked)."""
    from mltrace_otel.cli import render

    if (output is None) == (run is None):
        raise ConfigError("give an OUTPUT or --run RUN_ID (one of them)",
                          hint="e.g. mltrace trace predictions.csv")
    with _store(ctx) as store:
        if run is not None:
            lineage = store.trace_run(run)
        else:
            try:
                lineage = store.trace(output)
            except NotFound:
                lineage = None
            if lineage is None or not lineage.nodes:
                # a pointer runs only read is not an error (zero results); an unknown one is
                info = store.pointer(output)
                if as_json:
                    from mltrace_otel.store.models import Lineage

                    return _emit_json(Lineage(root=output, direction="trace").to_json())
                return _friendly(f"No run produced {output!r}: it is an input only "
                                 f"(read by {len(info.consumers)} run(s)).")
    if as_json:
        return _emit_json(lineage.to_json())
    _console().print(render.lineage_tree(lineage))


@app.command()
def impact(
    ctx: typer.Context,
    target: str = typer.Argument(..., metavar="OUTPUT|RUN_ID", help="An output pointer or a run id."),
    as_json: bool = JsonOpt,
) -> None:
    """What an output or a run fed: the runs downstream of it and every output they wrote."""
    from mltrace_otel.cli import render

    with _store(ctx) as store:
        lineage = store.impact(target)
    if as_json:
        return _emit_json(lineage.to_json())
    if not lineage.nodes:
        return _friendly(f"Nothing downstream of {target!r}.")
    console = _console()
    console.print(render.lineage_tree(lineage))
    if lineage.outputs:
        console.print(f"[bold]{len(lineage.outputs)} output(s) affected[/bold]: "
                      + ", ".join(lineage.outputs), highlight=False, markup=True)


@app.command()
def stale(
    ctx: typer.Context,
    component: Optional[str] = typer.Option(None, "--component", "-c", metavar="NAME",
                                            help="Only this component."),
    n: int = typer.Option(100, "-n", "--limit", metavar="N", help="How many runs."),
    as_json: bool = JsonOpt,
) -> None:
    """The latest run of each component that is stale now, and why."""
    from mltrace_otel.cli import render

    with _store(ctx) as store:
        if component is not None:
            store.component(component)  # NotFound for an unknown component
        runs = store.stale_runs(component, _limit(n))
    if as_json:
        return _emit_json([r.to_json() for r in runs])
    if not runs:
        return _friendly("Nothing is stale.")
    _console().print(render.stale_table(runs))


# --- components ------------------------------------------------------------------------------
@app.command()
def components(
    ctx: typer.Context,
    owner: Optional[str] = typer.Option(None, "--owner", metavar="OWNER",
                                        help="Only components with this owner."),
    tag_name: Optional[str] = typer.Option(None, "--tag", metavar="TAG",
                                           help="Only components with this tag."),
    as_json: bool = JsonOpt,
) -> None:
    """Components with their owner, tags and number of runs."""
    from mltrace_otel.cli import render

    with _store(ctx) as store:
        comps = store.components(owner, tag_name)
    if as_json:
        return _emit_json([c.to_json() for c in comps])
    if not comps:
        return _friendly("No components match." if owner or tag_name else "No components yet.")
    _console().print(render.components_table(comps))


@app.command()
def tags(ctx: typer.Context, as_json: bool = JsonOpt) -> None:
    """Every tag of every component."""
    with _store(ctx) as store:
        names = store.tags()
    if as_json:
        return _emit_json(list(names))
    if not names:
        return _friendly("No tags yet.")
    from rich.markup import escape

    _console().print("\n".join(escape(t) for t in names))


# --- flags and review ------------------------------------------------------------------------
@app.command()
def flag(
    ctx: typer.Context,
    outputs: list[str] = typer.Argument(..., metavar="OUTPUT", help="Output pointers to flag."),
    as_json: bool = JsonOpt,
) -> None:
    """Flag outputs as wrong, for `mltrace review`."""
    with _store(ctx) as store:
        for name in outputs:
            store.pointer(name)  # NotFound before anything is flagged
        for name in outputs:
            store.flag(name)
    if as_json:
        return _emit_json({"flagged": list(outputs)})
    _console().print(f"flagged {len(outputs)} output(s); see [bold]mltrace review[/bold]")


@app.command()
def unflag(
    ctx: typer.Context,
    outputs: Optional[list[str]] = typer.Argument(None, metavar="OUTPUT", help="Outputs to unflag."),
    all_: bool = typer.Option(False, "--all", help="Unflag every flagged output."),
    as_json: bool = JsonOpt,
) -> None:
    """Unflag outputs (or all of them with --all)."""
    outputs = list(outputs or [])
    if bool(outputs) == all_:
        raise ConfigError("give OUTPUT... or --all (one of them)", hint="e.g. mltrace unflag --all")
    with _store(ctx) as store:
        if all_:
            outputs = list(store.flagged())
            store.unflag_all()
        else:
            for name in outputs:
                store.pointer(name)
            for name in outputs:
                store.unflag(name)
    if as_json:
        return _emit_json({"unflagged": outputs})
    _console().print(f"unflagged {len(outputs)} output(s)")


@app.command()
def review(
    ctx: typer.Context,
    n: Optional[int] = typer.Option(None, "-n", "--limit", metavar="N", help="How many runs (default all)."),
    as_json: bool = JsonOpt,
) -> None:
    """The runs the flagged outputs have in common, most common first."""
    from rich.markup import escape

    from mltrace_otel.cli import render

    with _store(ctx) as store:
        result = store.review(_limit(n) if n is not None else None)
    if as_json:
        return _emit_json(result.to_json())
    if not result.flagged:
        return _friendly("Nothing is flagged. Flag wrong outputs with `mltrace flag OUTPUT...`.")
    console = _console()
    console.print(f"[bold]{len(result.flagged)} flagged output(s)[/bold]: "
                  + ", ".join(escape(f) for f in result.flagged))
    if result.unproduced:
        console.print("[yellow]no run produced[/yellow]: " + ", ".join(escape(u) for u in result.unproduced))
    if result.entries:
        console.print(render.review_table(result))
        top = result.entries[0]
        console.print(f"Start with [bold]{escape(top.run.component)}[/bold] "
                      f"([cyan]mltrace inspect {render.short_id(top.run.id)}[/cyan]).")


@app.command()
def notes(
    ctx: typer.Context,
    run_id: str = typer.Argument(..., metavar="RUN_ID", help="Run id or unique prefix."),
    text: str = typer.Argument(..., metavar="TEXT", help="The notes (replace the current ones)."),
    as_json: bool = JsonOpt,
) -> None:
    """Replace a run's notes."""
    with _store(ctx) as store:
        full = store.resolve_run_id(run_id)
        saved = store.set_notes(full, text)
    if as_json:
        return _emit_json({"run": full, "notes": saved})
    _console().print(f"notes saved on run [cyan]{full[:8]}[/cyan]")


@app.command()
def clear(
    ctx: typer.Context,
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask."),
    as_json: bool = JsonOpt,
) -> None:
    """Delete every run, flag, note and tag in the store (asks first)."""
    settings = _settings(ctx)
    with _store(ctx) as store:
        count = store.count_runs()
        if not yes:
            where = mask_url(settings.resolved_store_url)
            if not typer.confirm(f"Delete all {count} run(s) and every flag and note in {where}?", err=True):
                _friendly("Nothing deleted.")
                raise typer.Exit(1)
        store.clean()
    if as_json:
        return _emit_json({"cleared": True, "runs": count})
    _console().print(f"cleared {count} run(s)")


# --- services --------------------------------------------------------------------------------
def _serve_settings(ctx: typer.Context, **changes: object) -> Settings:
    return _settings(ctx).replace(**{k: v for k, v in changes.items() if v is not None})


HostOpt = typer.Option(None, "--host", metavar="HOST",
                       help="Address to bind (default MLTRACE_HOST or 127.0.0.1).")


@app.command()
def server(
    ctx: typer.Context,
    host: Optional[str] = HostOpt,
    http_port: Optional[int] = typer.Option(None, "--http-port", metavar="PORT",
                                            help="OTLP/HTTP port (default 4318)."),
    grpc_port: Optional[int] = typer.Option(None, "--grpc-port", metavar="PORT",
                                            help="OTLP/gRPC port (default 4317)."),
    ui_port: Optional[int] = typer.Option(None, "--ui-port", metavar="PORT",
                                          help="Dash app port (default 8050)."),
) -> None:
    """Collector (OTLP :4318/:4317) + Dash app + /metrics on this machine, on one store."""
    from mltrace_otel.collector.server import run_server

    code = run_server(_serve_settings(ctx, host=host, otlp_http_port=http_port, otlp_grpc_port=grpc_port,
                                      ui_port=ui_port))
    raise typer.Exit(code or 0)


@app.command()
def collector(
    ctx: typer.Context,
    host: Optional[str] = HostOpt,
    http_port: Optional[int] = typer.Option(None, "--http-port", metavar="PORT",
                                            help="OTLP/HTTP port (default 4318)."),
    grpc_port: Optional[int] = typer.Option(None, "--grpc-port", metavar="PORT",
                                            help="OTLP/gRPC port (default 4317)."),
) -> None:
    """Only the OTLP collector, writing into the store."""
    from mltrace_otel.collector.server import run_collector

    code = run_collector(_serve_settings(ctx, host=host, otlp_http_port=http_port, otlp_grpc_port=grpc_port))
    raise typer.Exit(code or 0)


@app.command()
def ui(
    ctx: typer.Context,
    host: Optional[str] = HostOpt,
    port: Optional[int] = typer.Option(None, "--port", metavar="PORT", help="Dash app port (default 8050)."),
) -> None:
    """Only the Dash app, on the store."""
    from mltrace_otel.dashboards.app import run_ui

    code = run_ui(_serve_settings(ctx, host=host, ui_port=port))
    raise typer.Exit(code or 0)


@app.command()
def migrate(ctx: typer.Context) -> None:
    """Create or upgrade the schema in the store (a ClickHouse server needs this once)."""
    settings = _settings(ctx)
    with _store(ctx):
        pass  # open_store applies every pending migration
    _console().print(f"schema is up to date in {mask_url(settings.resolved_store_url)} "
                     f"(database {settings.database})")


@app.command()
def demo(
    ctx: typer.Context,
    runs: int = typer.Option(3, "--runs", metavar="N",
                             help="How many times to run the pipeline (>= 3 shows every view)."),
    seed: int = typer.Option(7, "--seed", metavar="SEED", help="Seed of the generated data."),
) -> None:
    """Run a small instrumented ML pipeline a few times, so every view has data."""
    from mltrace_otel.cli.demo import run_demo

    run_demo(_settings(ctx), _console(), passes=max(1, runs), seed=seed)


@app.command()
def version(as_json: bool = JsonOpt) -> None:
    """The mltrace-otel version."""
    import platform

    from mltrace_otel import __version__

    if as_json:
        return _emit_json({"mltrace_otel": __version__, "python": platform.python_version()})
    typer.echo(f"mltrace-otel {__version__} (Python {platform.python_version()})")


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point (``mltrace``)."""
    app(args=argv if argv is not None else sys.argv[1:], prog_name="mltrace")


if __name__ == "__main__":  # pragma: no cover
    main()
