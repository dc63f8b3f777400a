"""The ``mltrace`` command: triage at a terminal, and JSON for scripts.

One :class:`~mltrace_otel.settings.Settings` is built in the callback (``--store`` beats
``MLTRACE_CLICKHOUSE_URL`` beats the embedded store under ``MLTRACE_DIR``) and passed down.
Errors are turned into one red line, a hint and exit code 1 in ONE place,
:class:`~mltrace_otel.cli.common.MltraceGroup`; commands just raise
:class:`~mltrace_otel.errors.MltraceError`.

Every query command asks :mod:`mltrace_otel.shapes` (the answers and JSON shapes it shares
with the HTTP API) and takes ``--json`` (shapes in docs/cli.md). Heavy modules (the store,
chDB, rich rendering, the collector, dash) are imported inside the commands so that
``mltrace --help`` stays fast.

May import: mltrace_otel.settings, .errors, .shapes, .client, .store, .sdk (demo), .collector,
.dashboards.
"""

from __future__ import annotations

import sys
from typing import Optional

import typer

from mltrace_otel import shapes
from mltrace_otel.cli.common import (
    MltraceCommand,
    MltraceGroup,
    cli_settings,
    console,
    emit_json,
    friendly,
    open_cli_queries,
    open_cli_store,
    parse_when,
    positive,
)
from mltrace_otel.errors import SERVER_MODULES, ConfigError, require_extra
from mltrace_otel.settings import Settings, mask_url

app = typer.Typer(
    name="mltrace",
    cls=MltraceGroup,
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
    server: Optional[str] = typer.Option(
        None, "--server", metavar="URL",
        help="Ask the HTTP API of an mltrace server or ui (http://host:8050) instead of opening "
             "a store; MLTRACE_TOKEN is sent. Default: MLTRACE_SERVER_URL.",
    ),
    address: Optional[str] = typer.Option(
        None, "--address", metavar="HOST",
        help="The host of a team deployment, as mltrace's --address: queries go to its ClickHouse "
             "at http://HOST:8123 (like DB_SERVER=HOST; --store wins).",
    ),
) -> None:
    """mltrace-otel: trace, review and check the staleness of ML pipeline runs."""
    if address and not store:
        store = f"http://{address.strip()}:8123"
    ctx.obj = Settings.from_env(store_url=store, server_url=server)


_SINCE_HELP = "Started at or after (2026-11-01, 7d; local time unless a zone is given)."
_UNTIL_HELP = ("Started at or before (2026-11-28T12:00, 1h; local time unless a zone is given; a date "
               "alone: the end of that day).")


# --- runs ------------------------------------------------------------------------------------
@app.command(cls=MltraceCommand)
def recent(
    ctx: typer.Context,
    n: int = typer.Option(10, "-n", "--limit", metavar="N", help="How many runs."),
    before: Optional[str] = typer.Option(None, "--before", metavar="RUN_ID",
                                         help="Page past this run (id or unique prefix)."),
    component: Optional[str] = typer.Option(None, "--component", "-c", metavar="NAME",
                                            help="Only runs of this component."),
    status: Optional[str] = typer.Option(None, "--status", metavar="STATUS",
                                         help="Only ok, failed or stale (stale now) runs."),
    owner: Optional[str] = typer.Option(None, "--owner", metavar="OWNER", help="Only runs with this owner."),
    tag_name: Optional[str] = typer.Option(None, "--tag", metavar="TAG",
                                           help="Only runs tagged TAG when they ran, or whose component "
                                                "has it now."),
    since: Optional[str] = typer.Option(None, "--since", metavar="WHEN",
                                        help=_SINCE_HELP),
    until: Optional[str] = typer.Option(None, "--until", metavar="WHEN",
                                        help=_UNTIL_HELP),
    as_json: bool = JsonOpt,
) -> None:
    """The newest runs, newest first; the filters search every run in the store."""
    from mltrace_otel.cli import render
    from mltrace_otel.store.models import RUN_STATUSES

    limit = positive(n)
    if status is not None and status.strip().lower() not in RUN_STATUSES:
        raise ConfigError(f"--status {status!r} is not one of " + ", ".join(RUN_STATUSES),
                          hint="e.g. mltrace recent --status failed")
    where = shapes.RecentFilter(component=component, status=status.strip().lower() if status else None,
                                owner=owner, tag=tag_name, since=parse_when("--since", since),
                                until=parse_when("--until", until))
    with open_cli_queries(ctx) as q:
        page = q.recent_page(limit, before, where)
    runs = list(page.runs)
    if as_json:
        return emit_json(shapes.runs_json(runs))
    if not runs and not page.more:
        if where.active:
            return friendly("No runs match these filters" + (" before that run." if before else "."))
        if before:
            return friendly("No older runs.")
        return friendly("No runs yet. Decorate a function with @Component.run, or try `mltrace demo`.")
    if runs:
        console().print(render.runs_table(runs, title="Recent runs"))
    else:
        friendly("No stale runs among the runs looked at so far.")
    if page.more:
        import shlex

        root = ctx.find_root().params  # the same store or server, so the line runs as printed
        where_from = "".join(f" --{k} {shlex.quote(mask_url(root[k]))}"
                             for k in ("store", "server", "address") if root.get(k))
        given = (("-c", component), ("--status", status), ("--owner", owner), ("--tag", tag_name),
                 ("--since", since), ("--until", until))
        opts = "".join(f" {k} {shlex.quote(v)}" for k, v in given if v)
        # the whole id: a short prefix can match several runs in a big store
        friendly(f"more: mltrace{where_from} recent -n {n}{opts} --before {page.next_before}", wrap=False)


@app.command(cls=MltraceCommand)
def history(
    ctx: typer.Context,
    component: str = typer.Argument(..., metavar="COMPONENT", help="Component name."),
    n: int = typer.Option(10, "-n", "--limit", metavar="N", help="How many runs."),
    since: Optional[str] = typer.Option(None, "--since", metavar="WHEN",
                                        help=_SINCE_HELP),
    until: Optional[str] = typer.Option(None, "--until", metavar="WHEN",
                                        help=_UNTIL_HELP),
    as_json: bool = JsonOpt,
) -> None:
    """A component's runs, newest first."""
    from mltrace_otel.cli import render

    lo, hi = parse_when("--since", since), parse_when("--until", until)
    limit = positive(n)
    with open_cli_queries(ctx) as q:
        runs = q.history(component, limit, lo, hi)
    if as_json:
        return emit_json(shapes.runs_json(runs))
    if not runs:
        return friendly(f"{component} has no runs in that window.")
    console().print(render.runs_table(runs, title=f"History of {render.escape(component)}"))


@app.command(cls=MltraceCommand)
def inspect(
    ctx: typer.Context,
    run_id: str = typer.Argument(..., metavar="RUN_ID", help="Run id or unique prefix (>= 4 chars)."),
    as_json: bool = JsonOpt,
) -> None:
    """Everything about one run: IO, code, git, tests, notes, staleness."""
    from mltrace_otel.cli import render

    with open_cli_queries(ctx) as q:
        run = q.inspect(run_id)
    if as_json:
        return emit_json(run.to_json())
    out = console()
    for part in render.run_detail(run):
        out.print(part)


@app.command(cls=MltraceCommand)
def tag(
    ctx: typer.Context,
    tag_name: str = typer.Argument(..., metavar="TAG", help="A component tag."),
    n: int = typer.Option(10, "-n", "--limit", metavar="N", help="How many runs."),
    as_json: bool = JsonOpt,
) -> None:
    """The newest runs of the components with this tag."""
    from mltrace_otel.cli import render

    limit = positive(n)
    with open_cli_queries(ctx) as q:
        runs = q.tagged(tag_name, limit)
    if as_json:
        return emit_json(shapes.runs_json(runs))
    if not runs:
        return friendly(f"The components tagged {tag_name!r} have no runs yet.")
    console().print(render.runs_table(runs, title=f"Runs tagged {render.escape(tag_name)}"))


# --- lineage ---------------------------------------------------------------------------------
@app.command(cls=MltraceCommand)
def trace(
    ctx: typer.Context,
    output: Optional[str] = typer.Argument(None, metavar="OUTPUT", help="An output pointer name."),
    run: Optional[str] = typer.Option(None, "--run", metavar="RUN_ID",
                                      help="Trace upstream of this run instead of an output."),
    as_json: bool = JsonOpt,
) -> None:
    """The runs that produced an output, as a tree (each run once, stale and failed runs marked)."""
    from mltrace_otel.cli import render

    shapes.check_trace(output, run)  # before the store is opened
    with open_cli_queries(ctx) as q:
        lineage = q.trace(output, run)
        readers = len(q.pointer(output).consumers) if output and not lineage.nodes else 0
    if as_json:
        return emit_json(lineage.to_json())
    if not lineage.nodes:  # a pointer runs only read is not an error (zero results)
        return friendly(f"No run produced {output!r}: it is an input only (read by {readers} run(s)).")
    out = console()
    out.print(render.lineage_tree(lineage, width=out.width))


@app.command(cls=MltraceCommand)
def impact(
    ctx: typer.Context,
    target: str = typer.Argument(..., metavar="OUTPUT|RUN_ID", help="An output pointer or a run id."),
    as_json: bool = JsonOpt,
) -> None:
    """What an output or a run fed: the runs downstream of it and every output they wrote."""
    from mltrace_otel.cli import render

    with open_cli_queries(ctx) as q:
        lineage = q.impact(target)
    if as_json:
        return emit_json(lineage.to_json())
    if not lineage.nodes:
        return friendly(f"Nothing downstream of {target!r}.")
    out = console()
    out.print(render.lineage_tree(lineage, width=out.width))
    if lineage.outputs:
        from mltrace_otel.cli.fit import fit_pieces

        out.print(fit_pieces([(f"{len(lineage.outputs)} output(s) affected", "bold"),
                              (": " + ", ".join(render.clean(o) for o in lineage.outputs), None)], out.width))


@app.command(cls=MltraceCommand)
def stale(
    ctx: typer.Context,
    component: Optional[str] = typer.Option(None, "--component", "-c", metavar="NAME",
                                            help="Only this component."),
    n: int = typer.Option(100, "-n", "--limit", metavar="N", help="How many runs."),
    direct: bool = typer.Option(False, "--direct",
                                help="Only runs stale for a cause of their own (leave out staleness "
                                     "inherited from runs upstream)."),
    as_json: bool = JsonOpt,
) -> None:
    """The latest run of each component that is stale now, and why (root cause and path for
    staleness inherited from upstream, marked as such)."""
    from mltrace_otel.cli import render

    limit = positive(n)
    with open_cli_queries(ctx) as q:
        runs = q.stale(component, limit, direct)
    if as_json:
        return emit_json(shapes.runs_json(runs))
    if not runs:
        return friendly("Nothing is stale.")
    console().print(render.stale_table(runs))


# --- components ------------------------------------------------------------------------------
@app.command(cls=MltraceCommand)
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

    with open_cli_queries(ctx) as q:
        comps = q.components(owner, tag_name)
    if as_json:
        return emit_json(shapes.components_json(comps))
    if not comps:
        return friendly("No components match." if owner or tag_name else "No components yet.")
    console().print(render.components_table(comps))


@app.command(cls=MltraceCommand)
def tags(ctx: typer.Context, as_json: bool = JsonOpt) -> None:
    """Every tag of every component."""
    with open_cli_queries(ctx) as q:
        names = q.tags()
    if as_json:
        return emit_json(shapes.tags_json(names))
    if not names:
        return friendly("No tags yet.")
    from mltrace_otel.cli.render import escape

    console().print("\n".join(escape(t) for t in names))


# --- flags and review ------------------------------------------------------------------------
RunOpt = typer.Option(None, "--run", metavar="RUN_ID",
                      help="The version this run wrote (id or unique prefix), not the newest one.")


@app.command(cls=MltraceCommand)
def flag(
    ctx: typer.Context,
    outputs: list[str] = typer.Argument(..., metavar="OUTPUT", help="Output pointers to flag."),
    run: Optional[str] = RunOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Flag outputs as wrong, for `mltrace review`: each output's newest version (the run that
    wrote it last), or with --run the version that run wrote."""
    from mltrace_otel.cli.render import escape, short_id, short_version

    with open_cli_queries(ctx) as q:
        change = q.flag(outputs, run)
    if as_json:
        return emit_json(shapes.flag_json(change))
    out = console()
    done = change.versions
    for f in done:
        if f.run:
            ver = f" @{escape(short_version(f.version))}" if f.version else ""
            out.print(f"flagged {escape(f.pointer)}{ver} (written by run [cyan]{short_id(f.run)}[/cyan])")
        else:
            out.print(f"[yellow]no run wrote {escape(f.pointer)}[/yellow]: flagged by name; "
                      "review lists it as unproduced")
    out.print(f"flagged {len(done)} output(s); see [bold]mltrace review[/bold]")


@app.command(cls=MltraceCommand)
def unflag(
    ctx: typer.Context,
    outputs: Optional[list[str]] = typer.Argument(None, metavar="OUTPUT", help="Outputs to unflag."),
    output_id: Optional[list[str]] = typer.Option(None, "--output_id", "--output-id", metavar="OUTPUT",
                                                  help="mltrace's form of OUTPUT (repeatable)."),
    all_: bool = typer.Option(False, "--all", help="Unflag every flagged output."),
    run: Optional[str] = typer.Option(None, "--run", metavar="RUN_ID",
                                      help="Only the version this run wrote (id or unique prefix)."),
    as_json: bool = JsonOpt,
) -> None:
    """Unflag outputs (every flagged version of each, or with --run the one that run wrote), or
    all of them with --all."""
    outputs = [*(outputs or []), *(output_id or [])]
    shapes.check_unflag(list(outputs or []), all_, run)  # before the store is opened
    with open_cli_queries(ctx) as q:
        change = q.unflag(list(outputs or []), all_, run)
    if as_json:
        return emit_json(shapes.unflag_json(change))
    console().print(f"unflagged {len(change.outputs)} output(s) ({len(change.versions)} flagged version(s))")


@app.command(cls=MltraceCommand)
def review(
    ctx: typer.Context,
    n: Optional[int] = typer.Option(None, "-n", "--limit", metavar="N", help="How many runs (default all)."),
    since: Optional[str] = typer.Option(None, "--since", metavar="WHEN",
                                        help="Only runs started at or after (2026-11-01, 7d)."),
    component: Optional[str] = typer.Option(None, "--component", "-c", metavar="NAME",
                                            help="Only runs of this component."),
    tag_name: Optional[str] = typer.Option(None, "--tag", metavar="TAG",
                                           help="Only runs of components with this tag."),
    as_json: bool = JsonOpt,
) -> None:
    """The runs the flagged outputs have in common, most common first; ties broken by evidence
    (failed, failed test, stale, changed since the previous run), each with why."""
    from mltrace_otel.cli import render
    from mltrace_otel.cli.render import escape

    limit = positive(n) if n is not None else None
    lo = parse_when("--since", since)
    with open_cli_queries(ctx) as q:
        result = q.review(limit, lo, component, tag_name)
    if as_json:
        return emit_json(result.to_json())
    if not result.flagged:
        return friendly("Nothing is flagged. Flag wrong outputs with `mltrace flag OUTPUT...`.")
    out = console()
    out.print(f"[bold]{len(result.flagged)} flagged output(s)[/bold]: "
              + ", ".join(escape(f) for f in result.flagged))
    if result.unproduced:
        out.print("[yellow]no run produced[/yellow]: " + ", ".join(escape(u) for u in result.unproduced))
    if result.scope:
        out.print("[dim]only runs with "
                  + ", ".join(f"{k} {escape(v)}" for k, v in result.scope.items()) + "[/dim]")
    if not result.entries and result.scope:
        out.print("[dim]No run in that scope is in the flagged outputs' traces.[/dim]")
    if result.entries:
        out.print(render.review_table(result))
        top = result.entries[0]
        because = f": {escape(top.why[0].rstrip('.'))}" if top.why else ""
        out.print(f"Start with [bold]{escape(top.run.component)}[/bold] "
                  f"([cyan]mltrace inspect {render.short_id(top.run.id)}[/cyan]){because}.")


@app.command(cls=MltraceCommand)
def notes(
    ctx: typer.Context,
    run_id: str = typer.Argument(..., metavar="RUN_ID", help="Run id or unique prefix."),
    text: str = typer.Argument(..., metavar="TEXT", help="The notes (replace the current ones)."),
    as_json: bool = JsonOpt,
) -> None:
    """Replace a run's notes."""
    with open_cli_queries(ctx) as q:
        full, saved = q.notes(run_id, text)
    if as_json:
        return emit_json(shapes.notes_json(full, saved))
    console().print(f"notes saved on run [cyan]{full[:8]}[/cyan]")


@app.command(cls=MltraceCommand)
def clear(
    ctx: typer.Context,
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask."),
    as_json: bool = JsonOpt,
) -> None:
    """Delete every run, flag, note and tag in the store (asks first)."""
    settings = cli_settings(ctx)
    with open_cli_store(ctx) as store:
        count = store.count_runs()
        if not yes:
            from mltrace_otel.cli import render

            where = render.clean(mask_url(settings.resolved_store_url))
            if not typer.confirm(f"Delete all {count} run(s) and every flag and note in {where}?", err=True):
                friendly("Nothing deleted.")
                raise typer.Exit(1)
        store.clean()
    if as_json:
        return emit_json({"cleared": True, "runs": count})
    console().print(f"cleared {count} run(s)")


# --- services --------------------------------------------------------------------------------
def _serve_settings(ctx: typer.Context, **changes: object) -> Settings:
    return cli_settings(ctx).replace(**{k: v for k, v in changes.items() if v is not None})


HostOpt = typer.Option(None, "--host", metavar="HOST",
                       help="Address to bind (default MLTRACE_HOST or 127.0.0.1).")


@app.command(cls=MltraceCommand)
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
    require_extra("mltrace server", SERVER_MODULES)
    from mltrace_otel.server import run_server

    code = run_server(_serve_settings(ctx, host=host, otlp_http_port=http_port, otlp_grpc_port=grpc_port,
                                      ui_port=ui_port))
    raise typer.Exit(code or 0)


@app.command(cls=MltraceCommand)
def collector(
    ctx: typer.Context,
    host: Optional[str] = HostOpt,
    http_port: Optional[int] = typer.Option(None, "--http-port", metavar="PORT",
                                            help="OTLP/HTTP port (default 4318)."),
    grpc_port: Optional[int] = typer.Option(None, "--grpc-port", metavar="PORT",
                                            help="OTLP/gRPC port (default 4317)."),
) -> None:
    """Only the OTLP collector, writing into the store."""
    require_extra("mltrace collector", SERVER_MODULES)
    from mltrace_otel.server import run_collector

    code = run_collector(_serve_settings(ctx, host=host, otlp_http_port=http_port, otlp_grpc_port=grpc_port))
    raise typer.Exit(code or 0)


@app.command(cls=MltraceCommand)
def ui(
    ctx: typer.Context,
    host: Optional[str] = HostOpt,
    port: Optional[int] = typer.Option(None, "--port", metavar="PORT", help="Dash app port (default 8050)."),
) -> None:
    """Only the Dash app, on the store."""
    require_extra("mltrace ui", SERVER_MODULES)
    from mltrace_otel.dashboards.app import run_ui

    code = run_ui(_serve_settings(ctx, host=host, ui_port=port))
    raise typer.Exit(code or 0)


@app.command(cls=MltraceCommand)
def migrate(ctx: typer.Context) -> None:
    """Create or upgrade the schema in the store (a ClickHouse server needs this once)."""
    settings = cli_settings(ctx)
    with open_cli_store(ctx) as store:  # open_store applies every pending migration
        version = store.schema_version()
    from mltrace_otel.cli.render import escape

    console().print(f"schema is up to date (version {version}) in "
                    f"{escape(mask_url(settings.resolved_store_url))} (database {escape(settings.database)})")


@app.command(cls=MltraceCommand)
def demo(
    ctx: typer.Context,
    runs: int = typer.Option(3, "--runs", metavar="N",
                             help="How many times to run the pipeline (>= 3 shows every view)."),
    seed: int = typer.Option(7, "--seed", metavar="SEED", help="Seed of the generated data."),
) -> None:
    """Run a small instrumented ML pipeline a few times, so every view has data."""
    from mltrace_otel.cli.demo import run_demo

    run_demo(cli_settings(ctx), console(), passes=max(1, runs), seed=seed)


@app.command(cls=MltraceCommand)
def version(as_json: bool = JsonOpt) -> None:
    """The mltrace-otel version."""
    import platform

    from mltrace_otel import __version__

    if as_json:
        return emit_json({"mltrace_otel": __version__, "python": platform.python_version()})
    typer.echo(f"mltrace-otel {__version__} (Python {platform.python_version()})")


def _one_line_summaries() -> None:
    """Give each command its docstring's first paragraph, joined into one line, as the summary
    ``mltrace --help`` lists: the rich help keeps a docstring's line breaks there, which cut
    sentences mid-line ("(the run that" / "wrote it last)")."""
    for info in app.registered_commands:
        doc = info.help or (info.callback.__doc__ if info.callback is not None else None)
        if info.short_help is None and doc:
            info.short_help = " ".join(doc.strip().split("\n\n")[0].split())


_one_line_summaries()


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point (``mltrace``)."""
    app(args=argv if argv is not None else sys.argv[1:], prog_name="mltrace")


if __name__ == "__main__":  # pragma: no cover
    main()
