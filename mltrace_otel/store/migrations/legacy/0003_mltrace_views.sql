-- Legacy: applied only to a store made before the 0100 baseline (store/schema.py), as it ran then.
-- Materialized views filling the mltrace tables. Robust to spans from any SDK: a missing
-- attribute gives '' / []; an array attribute that is a plain string is one element; parallel
-- arrays of unequal length are padded with '' (or cut to the length of Inputs / Outputs).
--
-- Cheap per insert (ClickHouse runs every view on every insert into otel_traces, and each
-- view's fixed cost -- analysing its query, writing a part -- is paid per insert): only
-- mltrace_runs_mv reads otel_traces and parses the JSON attribute arrays, each once (in the
-- inner query); mltrace_io and mltrace_components are filled by cascades from mltrace_runs
-- (as mltrace_lineage is, 0011), from the already parsed columns.
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
    if(S[4] = '', 2592000, toUInt64OrZero(S[4])) AS StalenessThresholdS,
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
        arrayMap(x -> if(startsWith(x, '[') AND JSONType(x) = 'Array', JSONExtract(x, 'Array(String)'), if(x = '', CAST([], 'Array(String)'), [x])), arrayMap(k -> SpanAttributes[k], ['mltrace.component.tags',
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

-- One row per (pointer, role, run), both roles in one view: a cascade from mltrace_runs, whose
-- InputTypes / OutputTypes already say 'UNKNOWN' for a missing type.
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

-- Component metadata from each run (latest Version wins): a cascade from mltrace_runs.
CREATE MATERIALIZED VIEW IF NOT EXISTS {{db}}.mltrace_components_mv {{on_cluster}}
TO {{db}}.mltrace_components
AS SELECT
    Component AS Name,
    Owner,
    Description,
    Tags,
    Start AS Version
FROM {{db}}.mltrace_runs;
