-- Legacy: applied only to a store made before the 0100 baseline (store/schema.py), as it ran then.
-- Off-contract attribute types (issue 13): mltrace_runs_mv reads them where the meaning is
-- unambiguous instead of silently reading nothing.
--
-- - mltrace.run.staleness_threshold_s: an integer (or a string holding one) as before; a
--   double (JS numbers: 3600.5 arrives as "3600.5") or a string holding a number is rounded to
--   the nearest second, halves to even like ClickHouse's round() and Python's (3600.5 -> 3600,
--   3601.5 -> 3602), clamped to [0, 1e18]; anything else (NaN, "soon") is the 30-day default,
--   like a missing one. It was toUInt64OrZero: 0 s, which made every input stale.
-- - The str[] attributes (the str_array expression, written out below): a string starting with '[' that is
--   not a whole valid JSON array is one element (it was no element: a pointer named
--   "[draft] notes.txt" vanished); elements of other types in their JSON form ([1,true] ->
--   '1', 'true').
--
-- MODIFY QUERY swaps the view's query atomically (as 0020 did for mltrace_lineage_mv), so no
-- insert runs without the view. Runs stored before keep their rows (forward-only); a valid
-- value is read exactly as before. The collector counts off-contract values in
-- mltrace_collector_spans_off_contract_total (collector/otlp.py).
ALTER TABLE {{db}}.mltrace_runs_mv {{on_cluster}} MODIFY QUERY
SELECT
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
