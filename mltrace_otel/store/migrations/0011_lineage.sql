-- The lineage table: one row per (output pointer, run) with what a trace needs of the run that
-- wrote it (start, component, version written, the run's own inputs and set_upstream names),
-- ordered by pointer, so one index read per lineage level finds producers and their inputs
-- together (store/lineage.py). Filled by a materialized view over mltrace_runs (a cascade: the
-- mltrace_runs MV's inserts trigger it), then back-filled from the runs already stored.
-- ReplacingMergeTree: readers de-duplicate (LIMIT 1 BY Pointer, RunId). Small granules and
-- compression blocks: reads are a few rows per pointer, so each costs little to decompress.
CREATE TABLE IF NOT EXISTS {{db}}.mltrace_lineage {{on_cluster}} (
    Pointer String,
    Start DateTime64(9),
    RunId String,
    Component LowCardinality(String),
    Version String,
    Inputs Array(String),
    InputVersions Array(String),
    Upstream Array(String)
) ENGINE = {{engine ReplacingMergeTree()}}
ORDER BY (Pointer, Start, RunId)
{{ttl toDateTime(Start)}}
SETTINGS non_replicated_deduplication_window = 10000, index_granularity = 1024, merge_selector_base = 20,
    min_compress_block_size = 4096, max_compress_block_size = 65536;

CREATE MATERIALIZED VIEW IF NOT EXISTS {{db}}.mltrace_lineage_mv {{on_cluster}}
TO {{db}}.mltrace_lineage
AS SELECT o.1 AS Pointer, Start, RunId, Component, o.2 AS Version, Inputs, InputVersions, Upstream
FROM {{db}}.mltrace_runs
ARRAY JOIN arrayZip(Outputs, OutputVersions) AS o;

INSERT INTO {{db}}.mltrace_lineage (Pointer, Start, RunId, Component, Version, Inputs, InputVersions, Upstream)
SELECT o.1, Start, RunId, Component, o.2, Inputs, InputVersions, Upstream
FROM {{db}}.mltrace_runs
ARRAY JOIN arrayZip(Outputs, OutputVersions) AS o
WHERE (SELECT count() FROM {{db}}.mltrace_lineage) = 0;
