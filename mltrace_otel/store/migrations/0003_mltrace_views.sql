-- Materialized views from otel_traces into the mltrace tables. Robust to spans from any SDK:
-- a missing attribute gives '' / []; an array attribute that is a plain string is one element;
-- parallel arrays of unequal length are padded with ''.
CREATE MATERIALIZED VIEW IF NOT EXISTS {{db}}.mltrace_runs_mv {{on_cluster}}
TO {{db}}.mltrace_runs
AS SELECT
    SpanId AS RunId,
    TraceId,
    ParentSpanId,
    ServiceName,
    SpanAttributes['mltrace.component.name'] AS Component,
    SpanAttributes['mltrace.component.owner'] AS Owner,
    SpanAttributes['mltrace.component.description'] AS Description,
    {{str_array SpanAttributes['mltrace.component.tags']}} AS Tags,
    Timestamp AS Start,
    addNanoseconds(Timestamp, Duration) AS End,
    Duration AS DurationNs,
    StatusCode,
    StatusMessage,
    {{str_array SpanAttributes['mltrace.run.inputs']}} AS Inputs,
    arrayMap(i -> {{str_array SpanAttributes['mltrace.run.input_versions']}}[i], arrayEnumerate(Inputs)) AS InputVersions,
    arrayMap(i -> if({{str_array SpanAttributes['mltrace.run.input_types']}}[i] = '', 'UNKNOWN', {{str_array SpanAttributes['mltrace.run.input_types']}}[i]), arrayEnumerate(Inputs)) AS InputTypes,
    {{str_array SpanAttributes['mltrace.run.outputs']}} AS Outputs,
    arrayMap(i -> {{str_array SpanAttributes['mltrace.run.output_versions']}}[i], arrayEnumerate(Outputs)) AS OutputVersions,
    arrayMap(i -> if({{str_array SpanAttributes['mltrace.run.output_types']}}[i] = '', 'UNKNOWN', {{str_array SpanAttributes['mltrace.run.output_types']}}[i]), arrayEnumerate(Outputs)) AS OutputTypes,
    {{str_array SpanAttributes['mltrace.run.upstream']}} AS Upstream,
    if(SpanAttributes['mltrace.run.staleness_threshold_s'] = '', 2592000,
       toUInt64OrZero(SpanAttributes['mltrace.run.staleness_threshold_s'])) AS StalenessThresholdS,
    SpanAttributes['mltrace.run.endpoint'] = 'true' AS Endpoint,
    SpanAttributes['vcs.ref.head.revision'] AS GitHash,
    {{str_array SpanAttributes['mltrace.git.tags']}} AS GitTags,
    SpanAttributes['code.function.name'] AS CodeFunction,
    SpanAttributes['code.file.path'] AS CodeFile,
    SpanAttributes['mltrace.run.notes'] AS Notes,
    arrayMap(a -> a['mltrace.test.name'], arrayFilter((a, n) -> n = 'mltrace.test', Events.Attributes, Events.Name)) AS TestNames,
    arrayMap(a -> a['mltrace.test.method'], arrayFilter((a, n) -> n = 'mltrace.test', Events.Attributes, Events.Name)) AS TestMethods,
    arrayMap(a -> a['mltrace.test.phase'], arrayFilter((a, n) -> n = 'mltrace.test', Events.Attributes, Events.Name)) AS TestPhases,
    arrayMap(a -> toUInt8(a['mltrace.test.passed'] = 'true'), arrayFilter((a, n) -> n = 'mltrace.test', Events.Attributes, Events.Name)) AS TestPassed,
    arrayMap(a -> a['mltrace.test.message'], arrayFilter((a, n) -> n = 'mltrace.test', Events.Attributes, Events.Name)) AS TestMessages,
    arrayStringConcat(arrayMap(a -> concat(a['exception.type'], ': ', a['exception.message']),
        arrayFilter((a, n) -> n = 'exception', Events.Attributes, Events.Name)), '\n') AS Exception
FROM {{db}}.otel_traces
WHERE SpanAttributes['mltrace.component.name'] != '';

CREATE MATERIALIZED VIEW IF NOT EXISTS {{db}}.mltrace_io_in_mv {{on_cluster}}
TO {{db}}.mltrace_io
AS SELECT
    p.1 AS Pointer,
    'in' AS Role,
    SpanId AS RunId,
    SpanAttributes['mltrace.component.name'] AS Component,
    p.2 AS Version,
    if(p.3 = '', 'UNKNOWN', p.3) AS PointerType,
    Timestamp AS Start,
    addNanoseconds(Timestamp, Duration) AS End
FROM {{db}}.otel_traces
ARRAY JOIN arrayMap(i -> ({{str_array SpanAttributes['mltrace.run.inputs']}}[i],
                          {{str_array SpanAttributes['mltrace.run.input_versions']}}[i],
                          {{str_array SpanAttributes['mltrace.run.input_types']}}[i]),
                    arrayEnumerate({{str_array SpanAttributes['mltrace.run.inputs']}})) AS p
WHERE SpanAttributes['mltrace.component.name'] != '';

CREATE MATERIALIZED VIEW IF NOT EXISTS {{db}}.mltrace_io_out_mv {{on_cluster}}
TO {{db}}.mltrace_io
AS SELECT
    p.1 AS Pointer,
    'out' AS Role,
    SpanId AS RunId,
    SpanAttributes['mltrace.component.name'] AS Component,
    p.2 AS Version,
    if(p.3 = '', 'UNKNOWN', p.3) AS PointerType,
    Timestamp AS Start,
    addNanoseconds(Timestamp, Duration) AS End
FROM {{db}}.otel_traces
ARRAY JOIN arrayMap(i -> ({{str_array SpanAttributes['mltrace.run.outputs']}}[i],
                          {{str_array SpanAttributes['mltrace.run.output_versions']}}[i],
                          {{str_array SpanAttributes['mltrace.run.output_types']}}[i]),
                    arrayEnumerate({{str_array SpanAttributes['mltrace.run.outputs']}})) AS p
WHERE SpanAttributes['mltrace.component.name'] != '';

CREATE MATERIALIZED VIEW IF NOT EXISTS {{db}}.mltrace_components_mv {{on_cluster}}
TO {{db}}.mltrace_components
AS SELECT
    SpanAttributes['mltrace.component.name'] AS Name,
    SpanAttributes['mltrace.component.owner'] AS Owner,
    SpanAttributes['mltrace.component.description'] AS Description,
    {{str_array SpanAttributes['mltrace.component.tags']}} AS Tags,
    Timestamp AS Version
FROM {{db}}.otel_traces
WHERE SpanAttributes['mltrace.component.name'] != '';
