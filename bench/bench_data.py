"""Synthetic runs for benchmarks: many chain pipelines inserted server-side (INSERT ... SELECT FROM
numbers()) straight into ``otel_traces``, so the materialized views fill the mltrace tables the
same way real spans do. Only ``bench/`` uses this.

Pipeline ``i`` (0 <= i < runs / stages) has ``stages`` runs: stage ``s`` (component ``stage_s``)
reads ``p{i}_s{s-1}`` (stage 0 reads ``raw_{i}``) and writes ``p{i}_s{s}``. Pipelines start 2 s
apart, stages 100 ms apart; span ids are pseudo-random hex.
"""

from __future__ import annotations

from typing import Any

from mltrace_otel.store.queries import sql

GENERATE = """
INSERT INTO {{db}}.otel_traces (Timestamp, TraceId, SpanId, ParentSpanId, TraceState, SpanName,
    SpanKind, ServiceName, ResourceAttributes, ScopeName, ScopeVersion, SpanAttributes, Duration,
    StatusCode, StatusMessage)
SELECT
    toDateTime64('2026-01-01 00:00:00', 9, 'UTC')
        + toIntervalMillisecond(intDiv(number, {stages:UInt32}) * 2000 + (number % {stages:UInt32}) * 100),
    lower(leftPad(hex(sipHash64('t1', intDiv(number, {stages:UInt32}))), 16, '0'))
        || lower(leftPad(hex(sipHash64('t2', intDiv(number, {stages:UInt32}))), 16, '0')),
    lower(leftPad(hex(sipHash64('span', number)), 16, '0')),
    '', '',
    concat('stage_', toString(number % {stages:UInt32})), 'Internal', 'bench',
    map('service.name', 'bench'), 'mltrace_otel', '0.1.0',
    map('mltrace.component.name', concat('stage_', toString(number % {stages:UInt32})),
        'mltrace.component.owner', 'bench',
        'mltrace.run.inputs', if(number % {stages:UInt32} = 0,
            concat('["raw_', toString(intDiv(number, {stages:UInt32})), '"]'),
            concat('["p', toString(intDiv(number, {stages:UInt32})), '_s',
                   toString(number % {stages:UInt32} - 1), '"]')),
        'mltrace.run.outputs', concat('["p', toString(intDiv(number, {stages:UInt32})), '_s',
                                      toString(number % {stages:UInt32}), '"]'),
        'vcs.ref.head.revision', '2f1c0e9a7d1b4c3e8f6a5b4c3d2e1f0a9b8c7d6e',
        'code.function.name', concat('stage_', toString(number % {stages:UInt32}))),
    50000000, 'Ok', ''
FROM numbers({offset:UInt64}, {count:UInt64})
"""


def generate_chain_runs(store: Any, runs: int, stages: int = 10, batch: int = 200_000) -> None:
    """Insert ``runs`` synthetic runs (see module docstring), ``batch`` per statement."""
    for offset in range(0, runs, batch):
        store.command("bench_generate", sql(store, GENERATE),
                      {"stages": stages, "offset": offset, "count": min(batch, runs - offset)})


def merge_all(store: Any) -> None:
    """Merge every part of the mltrace tables (the state background merges reach at rest)."""
    for table in ("otel_traces", "mltrace_runs", "mltrace_io", "mltrace_lineage", "mltrace_components"):
        store.command("bench_optimize", sql(store, f"OPTIMIZE TABLE {{{{db}}}}.{table} FINAL"))


def bytes_on_disk(store: Any) -> dict[str, int]:
    """Bytes on disk per table of the store's database."""
    rows = store.query("bench_bytes", "SELECT table, sum(bytes_on_disk) FROM system.parts "
                       "WHERE database = {db:String} AND active GROUP BY table", {"db": store.database})
    return {r[0]: int(r[1]) for r in rows}
