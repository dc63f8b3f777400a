-- Legacy: applied only to a store made before the 0100 baseline (store/schema.py), as it ran then.
-- Parts the size of one insert are written in the compact format (every column in one file)
-- rather than the wide one (two files per column, substream and skip index): up to 64 MiB of
-- uncompressed rows, where ClickHouse's default switches at 10 MiB. An index insert of the
-- collector (20,000-50,000 spans, ~8-25 MiB per table) then creates ~120 files instead of
-- ~440 across otel_traces, the mltrace tables and their projections. On ext4 creating a file
-- scans past the inodes deleted in the last minute, and merges delete parts all the time:
-- creating files was 7% of the collector's CPU under sustained load, and this cut its CPU per
-- span by ~8% (bench/bench_collector.py, interleaved runs). Merged parts past 64 MiB are wide
-- again, so reads of history are unchanged; reads of a small part touch fewer files.
ALTER TABLE {{db}}.otel_traces {{on_cluster}} MODIFY SETTING min_bytes_for_wide_part = 67108864;
ALTER TABLE {{db}}.otel_traces_trace_id_ts {{on_cluster}} MODIFY SETTING min_bytes_for_wide_part = 67108864;
ALTER TABLE {{db}}.mltrace_runs {{on_cluster}} MODIFY SETTING min_bytes_for_wide_part = 67108864;
ALTER TABLE {{db}}.mltrace_io {{on_cluster}} MODIFY SETTING min_bytes_for_wide_part = 67108864;
ALTER TABLE {{db}}.mltrace_components {{on_cluster}} MODIFY SETTING min_bytes_for_wide_part = 67108864;
ALTER TABLE {{db}}.mltrace_lineage {{on_cluster}} MODIFY SETTING min_bytes_for_wide_part = 67108864;
