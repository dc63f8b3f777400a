-- Legacy: applied only to a store made before the 0100 baseline (store/schema.py), as it ran then.
-- mltrace tables, filled by materialized views over otel_traces (0003), so they fill whichever
-- collector inserted. ReplacingMergeTree keyed by run id: a span delivered twice (an OTLP retry
-- after a lost acknowledgement) is one run; readers de-duplicate (LIMIT 1 BY / argMax / FINAL).

-- One row per run (a span carrying mltrace.component.name). Compact: the code snapshot and the
-- raw attribute maps stay in otel_traces (found by ServiceName, SpanName, Timestamp, SpanId).
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
    Ingested DateTime64(6) DEFAULT now64(6)
) ENGINE = {{engine ReplacingMergeTree(Ingested)}}
ORDER BY RunId
{{ttl toDateTime(Start)}}
SETTINGS index_granularity = 256, min_compress_block_size = 4096, max_compress_block_size = 65536;

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
{{ttl toDateTime(Start)}};

-- Component metadata: one row per run from the spans (latest wins), plus create_component rows.
CREATE TABLE IF NOT EXISTS {{db}}.mltrace_components {{on_cluster}} (
    Name String,
    Owner String,
    Description String,
    Tags Array(String),
    Version DateTime64(9)
) ENGINE = {{engine ReplacingMergeTree(Version)}}
ORDER BY Name;

-- Mutable user state, written by the CLI / UI / API: latest row (by Version) wins.
CREATE TABLE IF NOT EXISTS {{db}}.mltrace_component_tags {{on_cluster}} (
    Name String,
    Tag String,
    Deleted UInt8,
    Version DateTime64(9)
) ENGINE = {{engine ReplacingMergeTree(Version)}}
ORDER BY (Name, Tag);

CREATE TABLE IF NOT EXISTS {{db}}.mltrace_flags {{on_cluster}} (
    Pointer String,
    Flagged UInt8,
    Version DateTime64(9)
) ENGINE = {{engine ReplacingMergeTree(Version)}}
ORDER BY Pointer;

CREATE TABLE IF NOT EXISTS {{db}}.mltrace_notes {{on_cluster}} (
    RunId String,
    Notes String,
    Version DateTime64(9)
) ENGINE = {{engine ReplacingMergeTree(Version)}}
ORDER BY RunId;
