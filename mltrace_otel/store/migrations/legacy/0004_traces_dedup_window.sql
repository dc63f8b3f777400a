-- Legacy: applied only to a store made before the 0100 baseline (store/schema.py), as it ran then.
-- Insert de-duplication for the spool drain: a batch re-inserted with the same
-- insert_deduplication_token (after a crash between commit and delete) is stored once.
-- A table setting, not a column change, so the contrib schema stays as the exporter creates it.
ALTER TABLE {{db}}.otel_traces {{on_cluster}} MODIFY SETTING non_replicated_deduplication_window = 10000;

-- Wider background merges (merge_selector_base 5 -> 20): ingest writes many small parts (one
-- per insert, ~2,000 spans under load) and merging them took about a third of the collector's
-- CPU; merging ~20 similar parts at once instead of ~5 rewrites each row about half as often.
-- Reads see a few more parts (still bounded by the selector).
ALTER TABLE {{db}}.otel_traces {{on_cluster}} MODIFY SETTING merge_selector_base = 20;
