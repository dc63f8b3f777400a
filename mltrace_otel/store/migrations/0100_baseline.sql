-- The whole schema of a new store, in plain SQL: the shape migrations 0001-0070 (legacy/) left,
-- squashed. A new store applies this file alone and records version 100; a store made by an
-- earlier version gets the legacy migrations it lacks instead (store/schema.py), and
-- tests/store/test_schema_baseline.py checks that both end in the same tables, columns,
-- projections, indexes, settings and view queries. Every table setting is declared here, where
-- the table is created. Tokens {{...}} are the deployment's only: {{db}} the database,
-- {{on_cluster}}, {{engine X}} (ReplicatedX with a cluster), {{ttl EXPR}} (with MLTRACE_TTL_DAYS).
--
-- Settings that recur, and why:
-- - non_replicated_deduplication_window = 10000: a batch re-inserted with the same
--   insert_deduplication_token (the spool drain or the journal's replay after a crash) is stored
--   once, in otel_traces and, through the views, in the tables they fill.
-- - merge_selector_base = 20 (ClickHouse: 5): ingest writes one small part per insert; merging
--   ~20 similar parts at once rewrites each row about half as often (merges took about a third
--   of the collector's CPU).
-- - min_bytes_for_wide_part = 67108864 (ClickHouse: 10 MiB): an insert-sized part is written in
--   the compact format (one file for every column), ~120 files per index insert instead of
--   ~440; on ext4 file creation was 7% of the collector's CPU. Merged parts past 64 MiB are wide.
-- - deduplicate_merge_projection_mode = 'ignore': a ReplacingMergeTree needs the setting to
--   accept a projection; 'ignore' merges the projections' parts like the table's own instead of
--   rebuilding them from the merged rows (~30% less merge CPU). Projections may then keep
--   duplicate rows, which readers drop anyway (LIMIT 1 BY RunId, store/queries.py).
-- - index_granularity = 256 with small compression blocks: runs are read a few rows at a time
--   by random id or pointer.

-- 1. The OpenTelemetry Collector contrib ClickHouse exporter's traces schema (Map attribute
-- variant), so otelcol-contrib, Grafana's ClickHouse plugin and mltrace-otel read and write the
-- same tables. Only table settings are added to it, no column.
CREATE TABLE IF NOT EXISTS {{db}}.otel_traces {{on_cluster}} (
    Timestamp DateTime64(9) CODEC(Delta, ZSTD(1)),
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    ParentSpanId String CODEC(ZSTD(1)),
    TraceState String CODEC(ZSTD(1)),
    SpanName LowCardinality(String) CODEC(ZSTD(1)),
    SpanKind LowCardinality(String) CODEC(ZSTD(1)),
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    ResourceAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    ScopeName String CODEC(ZSTD(1)),
    ScopeVersion String CODEC(ZSTD(1)),
    SpanAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    Duration UInt64 CODEC(ZSTD(1)),
    StatusCode LowCardinality(String) CODEC(ZSTD(1)),
    StatusMessage String CODEC(ZSTD(1)),
    Events Nested (
        Timestamp DateTime64(9),
        Name LowCardinality(String),
        Attributes Map(LowCardinality(String), String)
    ) CODEC(ZSTD(1)),
    Links Nested (
        TraceId String,
        SpanId String,
        TraceState String,
        Attributes Map(LowCardinality(String), String)
    ) CODEC(ZSTD(1)),
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_res_attr_key mapKeys(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_res_attr_value mapValues(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_span_attr_key mapKeys(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_span_attr_value mapValues(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_duration Duration TYPE minmax GRANULARITY 1
) ENGINE = {{engine MergeTree()}}
PARTITION BY toDate(Timestamp)
ORDER BY (ServiceName, SpanName, toDateTime(Timestamp))
{{ttl toDateTime(Timestamp)}}
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1, non_replicated_deduplication_window = 10000,
    merge_selector_base = 20, min_bytes_for_wide_part = 67108864;

CREATE TABLE IF NOT EXISTS {{db}}.otel_traces_trace_id_ts {{on_cluster}} (
    TraceId String CODEC(ZSTD(1)),
    Start DateTime CODEC(Delta, ZSTD(1)),
    End DateTime CODEC(Delta, ZSTD(1)),
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.01) GRANULARITY 1
) ENGINE = {{engine MergeTree()}}
PARTITION BY toDate(Start)
ORDER BY (TraceId, Start)
{{ttl toDateTime(Start)}}
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1, non_replicated_deduplication_window = 10000,
    merge_selector_base = 20, min_bytes_for_wide_part = 67108864;

CREATE MATERIALIZED VIEW IF NOT EXISTS {{db}}.otel_traces_trace_id_ts_mv {{on_cluster}}
TO {{db}}.otel_traces_trace_id_ts
AS SELECT
    TraceId,
    min(Timestamp) AS Start,
    max(Timestamp) AS End
FROM {{db}}.otel_traces
WHERE TraceId != ''
GROUP BY TraceId;

-- 2. mltrace tables, filled by the materialized views of section 3 whichever collector inserted
-- into otel_traces. ReplacingMergeTree keyed by run id: a span delivered twice (an OTLP retry
-- after a lost acknowledgement) is one run; readers de-duplicate (LIMIT 1 BY / argMax / FINAL).

-- One row per run (a span carrying mltrace.component.name). Compact: the code snapshot and the
-- raw attribute maps stay in otel_traces. Projections: a component's runs by start (history,
-- staleness counts, set_upstream resolution) and every run by start (recent).
CREATE TABLE IF NOT EXISTS {{db}}.mltrace_runs {{on_cluster}} (
    RunId String,
    TraceId String,
    ParentSpanId String,
    ServiceName LowCardinality(String),
    Component LowCardinality(String),
    Owner String,
    Description String,
    Tags Array(String),
    Start DateTime64(9),
    End DateTime64(9),
    DurationNs UInt64,
    StatusCode LowCardinality(String),
    StatusMessage String,
    Inputs Array(String),
    InputVersions Array(String),
    InputTypes Array(LowCardinality(String)),
    Outputs Array(String),
    OutputVersions Array(String),
    OutputTypes Array(LowCardinality(String)),
    Upstream Array(String),
    StalenessThresholdS UInt64,
    Endpoint UInt8,
    GitHash String,
    GitTags Array(String),
    CodeFunction String,
    CodeFile String,
    Notes String,
    TestNames Array(String),
    TestMethods Array(String),
    TestPhases Array(LowCardinality(String)),
    TestPassed Array(UInt8),
    TestMessages Array(String),
    Exception String,
    Ingested DateTime64(6) DEFAULT now64(6),
    PROJECTION runs_by_component (SELECT Component, Start, RunId ORDER BY Component, Start),
    PROJECTION runs_by_start (SELECT Start, RunId ORDER BY Start)
) ENGINE = {{engine ReplacingMergeTree(Ingested)}}
ORDER BY RunId
{{ttl toDateTime(Start)}}
SETTINGS index_granularity = 256, min_compress_block_size = 4096, max_compress_block_size = 65536,
    non_replicated_deduplication_window = 10000, merge_selector_base = 20,
    deduplicate_merge_projection_mode = 'ignore', min_bytes_for_wide_part = 67108864;

-- One row per (pointer, role, run): producer and consumer look-ups by pointer name.
CREATE TABLE IF NOT EXISTS {{db}}.mltrace_io {{on_cluster}} (
    Pointer String,
    Role Enum8('in' = 1, 'out' = 2),
    RunId String,
    Component LowCardinality(String),
    Version String,
    PointerType LowCardinality(String),
    Start DateTime64(9),
    End DateTime64(9),
    Ingested DateTime64(6) DEFAULT now64(6)
) ENGINE = {{engine ReplacingMergeTree(Ingested)}}
ORDER BY (Pointer, Role, RunId)
{{ttl toDateTime(Start)}}
SETTINGS index_granularity = 8192, non_replicated_deduplication_window = 10000, merge_selector_base = 20,
    min_bytes_for_wide_part = 67108864;

-- Component metadata: one row per run from the spans (latest wins), plus create_component rows.
CREATE TABLE IF NOT EXISTS {{db}}.mltrace_components {{on_cluster}} (
    Name String,
    Owner String,
    Description String,
    Tags Array(String),
    Version DateTime64(9)
) ENGINE = {{engine ReplacingMergeTree(Version)}}
ORDER BY Name
SETTINGS index_granularity = 8192, non_replicated_deduplication_window = 10000, merge_selector_base = 20,
    min_bytes_for_wide_part = 67108864;

-- The lineage table: one row per (output pointer, run), ordered by pointer, so one index read
-- per lineage level finds the producers of a frontier's inputs (store/lineage.py), plus one row
-- with Pointer '' and Version '' for a run that wrote no output, so every run is here. ``Row`` is
-- the run's whole mltrace_runs row as one JSON array (the columns store/queries.run_from_list
-- parses, starts and ends in ns): a level reads two columns instead of eight, and a trace needs
-- no second read of its runs. Projections: whole runs by id (store/queries.fetch_runs), a
-- component's runs newest first (history) and every run by start (recent), each in one read.
CREATE TABLE IF NOT EXISTS {{db}}.mltrace_lineage {{on_cluster}} (
    Pointer String,
    Start DateTime64(9),
    RunId String,
    Component LowCardinality(String),
    Version String,
    Row String CODEC(ZSTD(1)),
    PROJECTION lineage_by_run (SELECT RunId, Row ORDER BY RunId),
    PROJECTION lineage_by_component (SELECT Component, Start, RunId, Row ORDER BY Component, Start),
    PROJECTION lineage_by_start (SELECT Start, RunId, Row ORDER BY Start)
) ENGINE = {{engine ReplacingMergeTree()}}
ORDER BY (Pointer, Start, RunId)
{{ttl toDateTime(Start)}}
SETTINGS non_replicated_deduplication_window = 10000, index_granularity = 256, merge_selector_base = 20,
    min_compress_block_size = 4096, max_compress_block_size = 65536,
    deduplicate_merge_projection_mode = 'ignore', min_bytes_for_wide_part = 67108864;

-- Mutable user state, written by the CLI / UI / API: the latest row (by Version) wins.
CREATE TABLE IF NOT EXISTS {{db}}.mltrace_component_tags {{on_cluster}} (
    Name String,
    Tag String,
    Deleted UInt8,
    Version DateTime64(9)
) ENGINE = {{engine ReplacingMergeTree(Version)}}
ORDER BY (Name, Tag);

-- Flags bind to an output's version: a row per (pointer, run that wrote the flagged version).
-- RunId '' flags a name no run had written when it was flagged; OutputVersion is the content
-- version that run wrote ('' unknown). The latest row per (Pointer, RunId) wins; the primary
-- index is on Pointer, which every read filters on.
CREATE TABLE IF NOT EXISTS {{db}}.mltrace_flags {{on_cluster}} (
    Pointer String,
    RunId String,
    OutputVersion String,
    Flagged UInt8,
    Version DateTime64(9)
) ENGINE = {{engine ReplacingMergeTree(Version)}}
PRIMARY KEY Pointer
ORDER BY (Pointer, RunId);

CREATE TABLE IF NOT EXISTS {{db}}.mltrace_notes {{on_cluster}} (
    RunId String,
    Notes String,
    Version DateTime64(9)
) ENGINE = {{engine ReplacingMergeTree(Version)}}
ORDER BY RunId;

-- 3. Materialized views filling the mltrace tables. Robust to spans from any SDK: a missing
-- attribute gives '' / []; parallel arrays of unequal length are padded with '' (or cut to the
-- length of Inputs / Outputs). Cheap per insert (every view runs on every insert, and each
-- pays a fixed cost to analyse its query and write a part): only mltrace_runs_mv reads
-- otel_traces and parses the JSON attribute arrays, each once (in the inner query); the
-- others are cascades from mltrace_runs, from its already parsed columns.
--
-- mltrace_runs_mv reads off-contract attribute types where the meaning is unambiguous:
-- - mltrace.run.staleness_threshold_s: an integer, or a double or a string holding a number
--   rounded to the nearest second (halves to even, like Python's round()), clamped to
--   [0, 1e18]; anything else (NaN, "soon") is the 30-day default, like a missing one.
-- - str[] attributes: a JSON array (how the contrib exporter renders an array attribute) gives
--   its elements, non-strings in their JSON form ([1,true] -> '1', 'true'); any other string is
--   one element, even one starting with '[' ("[draft] notes.txt"); '' is no element. A scalar
--   string holding a valid JSON array is read as the array (the collector counts such values,
--   collector/otlp.py).
CREATE MATERIALIZED VIEW IF NOT EXISTS {{db}}.mltrace_runs_mv {{on_cluster}}
TO {{db}}.mltrace_runs
AS SELECT
    RunId, TraceId, ParentSpanId, ServiceName,
    S[1] AS Component, S[2] AS Owner, S[3] AS Description, A[1] AS Tags,
    Start, End, DurationNs, StatusCode, StatusMessage,
    A[2] AS Inputs,
    arrayResize(A[3], length(Inputs), '') AS InputVersions,
    arrayMap(x -> if(x = '', 'UNKNOWN', x), arrayResize(A[4], length(Inputs), '')) AS InputTypes,
    A[5] AS Outputs,
    arrayResize(A[6], length(Outputs), '') AS OutputVersions,
    arrayMap(x -> if(x = '', 'UNKNOWN', x), arrayResize(A[7], length(Outputs), '')) AS OutputTypes,
    A[8] AS Upstream,
    multiIf(S[4] = '', 2592000,
        isNotNull(toUInt64OrNull(S[4])), toUInt64OrZero(S[4]),
        isFinite(ifNull(toFloat64OrNull(S[4]), nan)),
            toUInt64(least(greatest(round(toFloat64OrZero(S[4])), 0), 1e18)),
        2592000) AS StalenessThresholdS,
    S[5] = 'true' AS Endpoint,
    S[6] AS GitHash, A[9] AS GitTags, S[7] AS CodeFunction, S[8] AS CodeFile, S[9] AS Notes,
    arrayMap(a -> a['mltrace.test.name'], Tests) AS TestNames,
    arrayMap(a -> a['mltrace.test.method'], Tests) AS TestMethods,
    arrayMap(a -> a['mltrace.test.phase'], Tests) AS TestPhases,
    arrayMap(a -> toUInt8(a['mltrace.test.passed'] = 'true'), Tests) AS TestPassed,
    arrayMap(a -> a['mltrace.test.message'], Tests) AS TestMessages,
    arrayStringConcat(arrayMap(a -> concat(a['exception.type'], ': ', a['exception.message']),
        Exceptions), '\n') AS Exception
FROM (
    SELECT
        SpanId AS RunId,
        TraceId,
        ParentSpanId,
        ServiceName,
        arrayMap(k -> SpanAttributes[k], ['mltrace.component.name', 'mltrace.component.owner',
            'mltrace.component.description', 'mltrace.run.staleness_threshold_s', 'mltrace.run.endpoint',
            'vcs.ref.head.revision', 'code.function.name', 'code.file.path', 'mltrace.run.notes']) AS S,
        arrayMap(x -> if(startsWith(x, '[') AND JSONType(x) = 'Array', JSONExtract(x, 'Array(String)'),
                         if(x = '', CAST([], 'Array(String)'), [x])),
            arrayMap(k -> SpanAttributes[k], ['mltrace.component.tags',
            'mltrace.run.inputs', 'mltrace.run.input_versions', 'mltrace.run.input_types', 'mltrace.run.outputs',
            'mltrace.run.output_versions', 'mltrace.run.output_types', 'mltrace.run.upstream',
            'mltrace.git.tags'])) AS A,
        Timestamp AS Start,
        addNanoseconds(Timestamp, Duration) AS End,
        Duration AS DurationNs,
        StatusCode,
        StatusMessage,
        arrayFilter((a, n) -> n = 'mltrace.test', Events.Attributes, Events.Name) AS Tests,
        arrayFilter((a, n) -> n = 'exception', Events.Attributes, Events.Name) AS Exceptions
    FROM {{db}}.otel_traces
    WHERE SpanAttributes['mltrace.component.name'] != ''
);

-- One row per (pointer, role, run), both roles in one view (InputTypes / OutputTypes already say
-- 'UNKNOWN' for a missing type).
CREATE MATERIALIZED VIEW IF NOT EXISTS {{db}}.mltrace_io_mv {{on_cluster}}
TO {{db}}.mltrace_io
AS SELECT
    p.1 AS Pointer,
    p.4 AS Role,
    RunId,
    Component,
    p.2 AS Version,
    p.3 AS PointerType,
    Start,
    End
FROM {{db}}.mltrace_runs
ARRAY JOIN arrayConcat(arrayMap((n, v, t) -> (n, v, t, 'in'), Inputs, InputVersions, InputTypes),
                       arrayMap((n, v, t) -> (n, v, t, 'out'), Outputs, OutputVersions, OutputTypes)) AS p;

-- Component metadata from each run (the latest Version wins).
CREATE MATERIALIZED VIEW IF NOT EXISTS {{db}}.mltrace_components_mv {{on_cluster}}
TO {{db}}.mltrace_components
AS SELECT
    Component AS Name,
    Owner,
    Description,
    Tags,
    Start AS Version
FROM {{db}}.mltrace_runs;

-- A row per output pointer of each run, or one row with Pointer '' for a run that wrote none.
-- Row's columns are the ones store/queries.run_from_list parses, in its order.
CREATE MATERIALIZED VIEW IF NOT EXISTS {{db}}.mltrace_lineage_mv {{on_cluster}}
TO {{db}}.mltrace_lineage
AS SELECT o.1 AS Pointer, Start, RunId, Component, o.2 AS Version,
    toJSONString(tuple(RunId, TraceId, Component, toUnixTimestamp64Nano(Start),
        toUnixTimestamp64Nano(End), StatusCode, StatusMessage, Owner, Description, Tags, ServiceName,
        Inputs, InputVersions, InputTypes, Outputs, OutputVersions, OutputTypes, Upstream,
        StalenessThresholdS, Endpoint, GitHash, GitTags, CodeFunction, CodeFile, Notes, TestNames,
        TestMethods, TestPhases, TestPassed, TestMessages, Exception)) AS Row
FROM {{db}}.mltrace_runs
ARRAY JOIN if(empty(Outputs), [('', '')], arrayZip(Outputs, OutputVersions)) AS o;

-- 4. Native ingest (store/otlp_native.py): the collector inserts serialized OTLP requests into
-- the Null table otel_traces_otlp (ClickHouse parses the protobuf with store/otlp_trace.proto;
-- resource_spans is an ExportTraceServiceRequest as it reads it, input_format_protobuf_oneof_presence
-- filling each AnyValue's `value`), and otel_traces_otlp_mv renders every span as the otel_traces
-- row the contrib exporter writes, so the views of sections 1 and 3 fill the mltrace tables as
-- for any other writer. Value mapping as store/ingest.py renders it (tests/store/test_otlp_native.py
-- checks that both give identical rows): ids lowercase hex ('' for all-zero), SpanKind /
-- StatusCode names, attribute values as pcommon AsString (doubles in ES6 form, bytes base64,
-- arrays as Go's compact JSON with <>& escaped, maps sorted by key). Spans SQL does not render
-- (a map value, an array in an array, an array value on an event or a link, a duplicate key,
-- a string in an array holding a control character ClickHouse's JSON writer escapes in upper
-- case) are skipped by otel_traces_otlp_mv and listed by otel_traces_otlp_deferred_mv under the
-- insert's deduplication token, for the inserting process to render in Python.
CREATE TABLE IF NOT EXISTS {{db}}.otel_traces_otlp {{on_cluster}} (
    resource_spans Array(Tuple(resource Tuple(attributes Array(Tuple(key String, value Tuple(value Enum8('none' = 0, 'string_value' = 1, 'bool_value' = 2, 'int_value' = 3, 'double_value' = 4, 'array_value' = 5, 'kvlist_value' = 6, 'bytes_value' = 7), string_value String, bool_value Bool, int_value Int64, double_value Float64, array_value Tuple(values Array(Tuple(value Enum8('none' = 0, 'string_value' = 1, 'bool_value' = 2, 'int_value' = 3, 'double_value' = 4, 'array_value' = 5, 'kvlist_value' = 6, 'bytes_value' = 7), string_value String, bool_value Bool, int_value Int64, double_value Float64, array_value String, kvlist_value String, bytes_value String))), kvlist_value String, bytes_value String)))), scope_spans Array(Tuple(scope Tuple(name String, version String), spans Array(Tuple(trace_id String, span_id String, trace_state String, parent_span_id String, name String, kind Int32, start_time_unix_nano UInt64, end_time_unix_nano UInt64, attributes Array(Tuple(key String, value Tuple(value Enum8('none' = 0, 'string_value' = 1, 'bool_value' = 2, 'int_value' = 3, 'double_value' = 4, 'array_value' = 5, 'kvlist_value' = 6, 'bytes_value' = 7), string_value String, bool_value Bool, int_value Int64, double_value Float64, array_value Tuple(values Array(Tuple(value Enum8('none' = 0, 'string_value' = 1, 'bool_value' = 2, 'int_value' = 3, 'double_value' = 4, 'array_value' = 5, 'kvlist_value' = 6, 'bytes_value' = 7), string_value String, bool_value Bool, int_value Int64, double_value Float64, array_value String, kvlist_value String, bytes_value String))), kvlist_value String, bytes_value String))), events Array(Tuple(time_unix_nano UInt64, name String, attributes Array(Tuple(key String, value Tuple(value Enum8('none' = 0, 'string_value' = 1, 'bool_value' = 2, 'int_value' = 3, 'double_value' = 4, 'array_value' = 5, 'kvlist_value' = 6, 'bytes_value' = 7), string_value String, bool_value Bool, int_value Int64, double_value Float64, array_value Tuple(values Array(Tuple(value Enum8('none' = 0, 'string_value' = 1, 'bool_value' = 2, 'int_value' = 3, 'double_value' = 4, 'array_value' = 5, 'kvlist_value' = 6, 'bytes_value' = 7), string_value String, bool_value Bool, int_value Int64, double_value Float64, array_value String, kvlist_value String, bytes_value String))), kvlist_value String, bytes_value String))))), links Array(Tuple(trace_id String, span_id String, trace_state String, attributes Array(Tuple(key String, value Tuple(value Enum8('none' = 0, 'string_value' = 1, 'bool_value' = 2, 'int_value' = 3, 'double_value' = 4, 'array_value' = 5, 'kvlist_value' = 6, 'bytes_value' = 7), string_value String, bool_value Bool, int_value Int64, double_value Float64, array_value Tuple(values Array(Tuple(value Enum8('none' = 0, 'string_value' = 1, 'bool_value' = 2, 'int_value' = 3, 'double_value' = 4, 'array_value' = 5, 'kvlist_value' = 6, 'bytes_value' = 7), string_value String, bool_value Bool, int_value Int64, double_value Float64, array_value String, kvlist_value String, bytes_value String))), kvlist_value String, bytes_value String))))), status Tuple(message String, code Int32)))))))
) ENGINE = Null;

CREATE TABLE IF NOT EXISTS {{db}}.otel_traces_otlp_deferred {{on_cluster}} (
    Batch String,
    TraceId String,
    SpanId String
) ENGINE = Memory;

CREATE MATERIALIZED VIEW IF NOT EXISTS {{db}}.otel_traces_otlp_mv {{on_cluster}}
TO {{db}}.otel_traces
AS SELECT
    fromUnixTimestamp64Nano(toInt64(sp.start_time_unix_nano)) AS Timestamp,
    lower(hex(sp.trace_id)) AS TraceId,
    lower(hex(sp.span_id)) AS SpanId,
    if(length(replaceAll(sp.parent_span_id, '\0', '')) = 0, '', lower(hex(sp.parent_span_id))) AS ParentSpanId,
    sp.trace_state AS TraceState,
    sp.name AS SpanName,
    if(sp.kind BETWEEN 0 AND 5, arrayElement(['Unspecified', 'Internal', 'Server', 'Client', 'Producer', 'Consumer'], sp.kind + 1), '') AS SpanKind,
    arrayFirst(kv -> kv.key = 'service.name', rs.resource.attributes).value.string_value AS ServiceName,
    mapSort(mapFromArrays(arrayMap(kv -> kv.key, rs.resource.attributes), arrayMap(kv -> if(kv.value.value = 'array_value', if(arrayExists(x -> x.value = 'double_value' AND NOT isFinite(x.double_value), kv.value.array_value.values), '', concat('[', arrayStringConcat(arrayMap(x -> multiIf(x.value = 'string_value', replaceAll(replaceAll(replaceAll(replaceAll(toJSONString(x.string_value), '\\/', '/'), '<', '\u003c'), '>', '\u003e'), '&', '\u0026'), x.value = 'bool_value', if(x.bool_value, 'true', 'false'), x.value = 'int_value', toString(x.int_value), x.value = 'double_value', replaceRegexpOne(toString(x.double_value), 'e([0-9])', 'e+\\1'), x.value = 'bytes_value', concat('"', base64Encode(x.bytes_value), '"'), 'null'), kv.value.array_value.values), ','), ']')), multiIf(kv.value.value = 'string_value', kv.value.string_value, kv.value.value = 'bool_value', if(kv.value.bool_value, 'true', 'false'), kv.value.value = 'int_value', toString(kv.value.int_value), kv.value.value = 'double_value', multiIf(isNaN(kv.value.double_value), 'json: unsupported value: NaN', isInfinite(kv.value.double_value), if(kv.value.double_value > 0, 'json: unsupported value: +Inf', 'json: unsupported value: -Inf'), replaceRegexpOne(toString(kv.value.double_value), 'e([0-9])', 'e+\\1')), kv.value.value = 'bytes_value', base64Encode(kv.value.bytes_value), '')), rs.resource.attributes))) AS ResourceAttributes,
    ss.scope.name AS ScopeName,
    ss.scope.version AS ScopeVersion,
    mapSort(mapFromArrays(arrayMap(kv -> kv.key, sp.attributes), arrayMap(kv -> if(kv.value.value = 'array_value', if(arrayExists(x -> x.value = 'double_value' AND NOT isFinite(x.double_value), kv.value.array_value.values), '', concat('[', arrayStringConcat(arrayMap(x -> multiIf(x.value = 'string_value', replaceAll(replaceAll(replaceAll(replaceAll(toJSONString(x.string_value), '\\/', '/'), '<', '\u003c'), '>', '\u003e'), '&', '\u0026'), x.value = 'bool_value', if(x.bool_value, 'true', 'false'), x.value = 'int_value', toString(x.int_value), x.value = 'double_value', replaceRegexpOne(toString(x.double_value), 'e([0-9])', 'e+\\1'), x.value = 'bytes_value', concat('"', base64Encode(x.bytes_value), '"'), 'null'), kv.value.array_value.values), ','), ']')), multiIf(kv.value.value = 'string_value', kv.value.string_value, kv.value.value = 'bool_value', if(kv.value.bool_value, 'true', 'false'), kv.value.value = 'int_value', toString(kv.value.int_value), kv.value.value = 'double_value', multiIf(isNaN(kv.value.double_value), 'json: unsupported value: NaN', isInfinite(kv.value.double_value), if(kv.value.double_value > 0, 'json: unsupported value: +Inf', 'json: unsupported value: -Inf'), replaceRegexpOne(toString(kv.value.double_value), 'e([0-9])', 'e+\\1')), kv.value.value = 'bytes_value', base64Encode(kv.value.bytes_value), '')), sp.attributes))) AS SpanAttributes,
    sp.end_time_unix_nano - sp.start_time_unix_nano AS Duration,
    if(sp.status.code BETWEEN 0 AND 2, arrayElement(['Unset', 'Ok', 'Error'], sp.status.code + 1), '')
        AS StatusCode,
    sp.status.message AS StatusMessage,
    arrayMap(e -> fromUnixTimestamp64Nano(toInt64(e.time_unix_nano)), sp.events) AS `Events.Timestamp`,
    arrayMap(e -> e.name, sp.events) AS `Events.Name`,
    arrayMap(e -> mapSort(mapFromArrays(arrayMap(kv -> kv.key, e.attributes), arrayMap(kv -> multiIf(kv.value.value = 'string_value', kv.value.string_value, kv.value.value = 'bool_value', if(kv.value.bool_value, 'true', 'false'), kv.value.value = 'int_value', toString(kv.value.int_value), kv.value.value = 'double_value', multiIf(isNaN(kv.value.double_value), 'json: unsupported value: NaN', isInfinite(kv.value.double_value), if(kv.value.double_value > 0, 'json: unsupported value: +Inf', 'json: unsupported value: -Inf'), replaceRegexpOne(toString(kv.value.double_value), 'e([0-9])', 'e+\\1')), kv.value.value = 'bytes_value', base64Encode(kv.value.bytes_value), ''), e.attributes))), sp.events) AS `Events.Attributes`,
    arrayMap(l -> if(length(replaceAll(l.trace_id, '\0', '')) = 0, '', lower(hex(l.trace_id))), sp.links) AS `Links.TraceId`,
    arrayMap(l -> if(length(replaceAll(l.span_id, '\0', '')) = 0, '', lower(hex(l.span_id))), sp.links) AS `Links.SpanId`,
    arrayMap(l -> l.trace_state, sp.links) AS `Links.TraceState`,
    arrayMap(l -> mapSort(mapFromArrays(arrayMap(kv -> kv.key, l.attributes), arrayMap(kv -> multiIf(kv.value.value = 'string_value', kv.value.string_value, kv.value.value = 'bool_value', if(kv.value.bool_value, 'true', 'false'), kv.value.value = 'int_value', toString(kv.value.int_value), kv.value.value = 'double_value', multiIf(isNaN(kv.value.double_value), 'json: unsupported value: NaN', isInfinite(kv.value.double_value), if(kv.value.double_value > 0, 'json: unsupported value: +Inf', 'json: unsupported value: -Inf'), replaceRegexpOne(toString(kv.value.double_value), 'e([0-9])', 'e+\\1')), kv.value.value = 'bytes_value', base64Encode(kv.value.bytes_value), ''), l.attributes))), sp.links) AS `Links.Attributes`
FROM {{db}}.otel_traces_otlp
ARRAY JOIN resource_spans AS rs
ARRAY JOIN rs.scope_spans AS ss
ARRAY JOIN ss.spans AS sp
WHERE NOT ((arrayExists(kv -> kv.value.value = 'kvlist_value' OR (kv.value.value = 'array_value' AND arrayExists(x -> x.value IN ('array_value', 'kvlist_value') OR (x.value = 'string_value' AND match(x.string_value, '[\\x0b\\x0e\\x0f\\x1a-\\x1f]')), kv.value.array_value.values)), sp.attributes) OR length(arrayDistinct(arrayMap(kv -> kv.key, sp.attributes))) != length(sp.attributes)) OR (arrayExists(kv -> kv.value.value = 'kvlist_value' OR (kv.value.value = 'array_value' AND arrayExists(x -> x.value IN ('array_value', 'kvlist_value') OR (x.value = 'string_value' AND match(x.string_value, '[\\x0b\\x0e\\x0f\\x1a-\\x1f]')), kv.value.array_value.values)), rs.resource.attributes) OR length(arrayDistinct(arrayMap(kv -> kv.key, rs.resource.attributes))) != length(rs.resource.attributes)) OR arrayExists(e -> (arrayExists(kv -> kv.value.value IN ('array_value', 'kvlist_value'), e.attributes) OR length(arrayDistinct(arrayMap(kv -> kv.key, e.attributes))) != length(e.attributes)), sp.events) OR arrayExists(l -> (arrayExists(kv -> kv.value.value IN ('array_value', 'kvlist_value'), l.attributes) OR length(arrayDistinct(arrayMap(kv -> kv.key, l.attributes))) != length(l.attributes)), sp.links));

CREATE MATERIALIZED VIEW IF NOT EXISTS {{db}}.otel_traces_otlp_deferred_mv {{on_cluster}}
TO {{db}}.otel_traces_otlp_deferred (Batch String, TraceId String, SpanId String)
AS SELECT
    getSetting('insert_deduplication_token') AS Batch,
    lower(hex(sp.trace_id)) AS TraceId,
    lower(hex(sp.span_id)) AS SpanId
FROM {{db}}.otel_traces_otlp
ARRAY JOIN resource_spans AS rs
ARRAY JOIN rs.scope_spans AS ss
ARRAY JOIN ss.spans AS sp
WHERE ((arrayExists(kv -> kv.value.value = 'kvlist_value' OR (kv.value.value = 'array_value' AND arrayExists(x -> x.value IN ('array_value', 'kvlist_value') OR (x.value = 'string_value' AND match(x.string_value, '[\\x0b\\x0e\\x0f\\x1a-\\x1f]')), kv.value.array_value.values)), sp.attributes) OR length(arrayDistinct(arrayMap(kv -> kv.key, sp.attributes))) != length(sp.attributes)) OR (arrayExists(kv -> kv.value.value = 'kvlist_value' OR (kv.value.value = 'array_value' AND arrayExists(x -> x.value IN ('array_value', 'kvlist_value') OR (x.value = 'string_value' AND match(x.string_value, '[\\x0b\\x0e\\x0f\\x1a-\\x1f]')), kv.value.array_value.values)), rs.resource.attributes) OR length(arrayDistinct(arrayMap(kv -> kv.key, rs.resource.attributes))) != length(rs.resource.attributes)) OR arrayExists(e -> (arrayExists(kv -> kv.value.value IN ('array_value', 'kvlist_value'), e.attributes) OR length(arrayDistinct(arrayMap(kv -> kv.key, e.attributes))) != length(e.attributes)), sp.events) OR arrayExists(l -> (arrayExists(kv -> kv.value.value IN ('array_value', 'kvlist_value'), l.attributes) OR length(arrayDistinct(arrayMap(kv -> kv.key, l.attributes))) != length(l.attributes)), sp.links));

-- 5. The collector's journal indexer (collector/indexer.py, store/journal.py): one row per index
-- group, a contiguous range of journal records indexed into otel_traces by one insert whose
-- insert_deduplication_token names the range. Done = 0 before the insert, 1 after; a group found
-- with Done = 0 after a crash is indexed again with the same token, so nothing is stored twice.
CREATE TABLE IF NOT EXISTS {{db}}.mltrace_ingest_progress {{on_cluster}} (
    FromSeq UInt64,
    ToSeq UInt64,
    Done UInt8
) ENGINE = {{engine ReplacingMergeTree(Done)}}
ORDER BY (FromSeq, ToSeq);
