-- Legacy: applied only to a store made before the 0100 baseline (store/schema.py), as it ran then.
-- Merges of mltrace_runs and mltrace_lineage merge their projections' parts like any other
-- (sorted streams, as the table's own) instead of rebuilding every projection from the merged
-- rows (re-sorting them, Row JSON included): 'rebuild' kept the projections free of the
-- duplicate rows a merge collapses in the table, which no reader needs -- every read
-- de-duplicates by run id (store/queries.py: LIMIT 1 BY RunId), as it must for parts not yet
-- merged. Merges took ~30% less CPU (natural merges after 24 inserts of 48,128 spans: 13.0-13.7
-- s against 18.1-19.7), ~5% of the collector's CPU under sustained load.
ALTER TABLE {{db}}.mltrace_runs {{on_cluster}} MODIFY SETTING deduplicate_merge_projection_mode = 'ignore';
ALTER TABLE {{db}}.mltrace_lineage {{on_cluster}} MODIFY SETTING deduplicate_merge_projection_mode = 'ignore';
