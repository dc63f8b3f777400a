-- Insert de-duplication for the spool drain: a batch re-inserted with the same
-- insert_deduplication_token (after a crash between commit and delete) is stored once.
-- A table setting, not a column change, so the contrib schema stays as the exporter creates it.
ALTER TABLE {{db}}.otel_traces {{on_cluster}} MODIFY SETTING non_replicated_deduplication_window = 10000;
