-- Legacy: applied only to a store made before the 0100 baseline (store/schema.py), as it ran then.
-- The lineage table: one row per (output pointer, run), ordered by pointer, so one index read
-- per lineage level finds the producers of a frontier's inputs (store/lineage.py). ``Row`` is
-- the writer's whole mltrace_runs row as one JSON array (store/queries.RUN_ROW_JSON's columns,
-- starts in ns): a level reads two columns instead of eight (the engine's cost per query grows
-- with the columns read, not with the few rows), and a trace needs no second read of its runs.
-- Filled by a materialized view over mltrace_runs (a cascade: the mltrace_runs MV's inserts
-- trigger it), then back-filled from the runs already stored. ReplacingMergeTree: readers
-- de-duplicate by run id. Small granules: reads are a few rows per pointer. The projection
-- lineage_by_run serves whole runs by id (store/queries.fetch_runs: two columns instead of
-- mltrace_runs' thirty-odd); runs that wrote nothing are read from mltrace_runs.
CREATE TABLE IF NOT EXISTS {{db}}.mltrace_lineage {{on_cluster}} (
    Pointer String,
    Start DateTime64(9),
    RunId String,
    Component LowCardinality(String),
    Version String,
    Row String CODEC(ZSTD(1)),
    PROJECTION lineage_by_run (SELECT RunId, Row ORDER BY RunId)
) ENGINE = {{engine ReplacingMergeTree()}}
ORDER BY (Pointer, Start, RunId)
{{ttl toDateTime(Start)}}
SETTINGS non_replicated_deduplication_window = 10000, index_granularity = 256, merge_selector_base = 20,
    min_compress_block_size = 4096, max_compress_block_size = 65536,
    deduplicate_merge_projection_mode = 'rebuild';

CREATE MATERIALIZED VIEW IF NOT EXISTS {{db}}.mltrace_lineage_mv {{on_cluster}}
TO {{db}}.mltrace_lineage
AS SELECT o.1 AS Pointer, Start, RunId, Component, o.2 AS Version,
    toJSONString(tuple(RunId, TraceId, Component, toUnixTimestamp64Nano(Start),
        toUnixTimestamp64Nano(End), StatusCode, StatusMessage, Owner, Description, Tags, ServiceName,
        Inputs, InputVersions, InputTypes, Outputs, OutputVersions, OutputTypes, Upstream,
        StalenessThresholdS, Endpoint, GitHash, GitTags, CodeFunction, CodeFile, Notes, TestNames,
        TestMethods, TestPhases, TestPassed, TestMessages, Exception)) AS Row
FROM {{db}}.mltrace_runs
ARRAY JOIN arrayZip(Outputs, OutputVersions) AS o;

INSERT INTO {{db}}.mltrace_lineage (Pointer, Start, RunId, Component, Version, Row)
SELECT o.1, Start, RunId, Component, o.2,
    toJSONString(tuple(RunId, TraceId, Component, toUnixTimestamp64Nano(Start),
        toUnixTimestamp64Nano(End), StatusCode, StatusMessage, Owner, Description, Tags, ServiceName,
        Inputs, InputVersions, InputTypes, Outputs, OutputVersions, OutputTypes, Upstream,
        StalenessThresholdS, Endpoint, GitHash, GitTags, CodeFunction, CodeFile, Notes, TestNames,
        TestMethods, TestPhases, TestPassed, TestMessages, Exception))
FROM {{db}}.mltrace_runs
ARRAY JOIN arrayZip(Outputs, OutputVersions) AS o
WHERE (SELECT count() FROM {{db}}.mltrace_lineage) = 0;
