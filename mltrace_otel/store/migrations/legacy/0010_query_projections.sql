-- Legacy: applied only to a store made before the 0100 baseline (store/schema.py), as it ran then.
-- Projections for the query API (store/queries.py): a component's runs by start time (history,
-- staleness counts, set_upstream resolution) and every run by start time (recent). mltrace_runs
-- is a ReplacingMergeTree, which needs deduplicate_merge_projection_mode before it accepts a
-- projection; 'rebuild' rebuilds a part's projection when a merge drops duplicate rows.
-- MATERIALIZE builds them for rows that existed before this migration (a no-op on a new store).
ALTER TABLE {{db}}.mltrace_runs {{on_cluster}} MODIFY SETTING deduplicate_merge_projection_mode = 'rebuild';
ALTER TABLE {{db}}.mltrace_runs {{on_cluster}} ADD PROJECTION IF NOT EXISTS runs_by_component (SELECT Component, Start, RunId ORDER BY Component, Start);
ALTER TABLE {{db}}.mltrace_runs {{on_cluster}} ADD PROJECTION IF NOT EXISTS runs_by_start (SELECT Start, RunId ORDER BY Start);
ALTER TABLE {{db}}.mltrace_runs {{on_cluster}} MATERIALIZE PROJECTION runs_by_component;
ALTER TABLE {{db}}.mltrace_runs {{on_cluster}} MATERIALIZE PROJECTION runs_by_start;
