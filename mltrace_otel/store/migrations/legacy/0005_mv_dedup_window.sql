-- Legacy: applied only to a store made before the 0100 baseline (store/schema.py), as it ran then.
-- The tables the materialized views fill get the same insert de-duplication window as
-- otel_traces: a spool batch re-inserted with its token after a crash is then dropped by the
-- views too, so no duplicate run, IO or component rows reach them (readers still de-duplicate:
-- a collector retry without a token can deliver a span twice).
ALTER TABLE {{db}}.otel_traces_trace_id_ts {{on_cluster}} MODIFY SETTING non_replicated_deduplication_window = 10000;
ALTER TABLE {{db}}.mltrace_runs {{on_cluster}} MODIFY SETTING non_replicated_deduplication_window = 10000;
ALTER TABLE {{db}}.mltrace_io {{on_cluster}} MODIFY SETTING non_replicated_deduplication_window = 10000;
ALTER TABLE {{db}}.mltrace_components {{on_cluster}} MODIFY SETTING non_replicated_deduplication_window = 10000;

-- The same wider merges as otel_traces (0004): these tables (and mltrace_lineage, 0011) get one
-- small part per insert too.
ALTER TABLE {{db}}.otel_traces_trace_id_ts {{on_cluster}} MODIFY SETTING merge_selector_base = 20;
ALTER TABLE {{db}}.mltrace_runs {{on_cluster}} MODIFY SETTING merge_selector_base = 20;
ALTER TABLE {{db}}.mltrace_io {{on_cluster}} MODIFY SETTING merge_selector_base = 20;
ALTER TABLE {{db}}.mltrace_components {{on_cluster}} MODIFY SETTING merge_selector_base = 20;
