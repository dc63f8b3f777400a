-- Legacy: applied only to a store made before the 0100 baseline (store/schema.py), as it ran then.
-- The collector's ingest journal (store/journal.py, collector/indexer.py): with acknowledgement
-- "journaled" (the default on the embedded store) a request is answered once its serialized
-- bytes are appended to the journal's segment files, and indexed into otel_traces (and through
-- the views the mltrace tables) in the background, many requests per insert. A collector
-- killed in between indexes the rest of its journal when it starts again. This table records
-- which ranges of the journal are indexed. (The first version kept the journal itself in a
-- table, mltrace_ingest_journal, created here; store/journal.recover moves the rows of such a
-- store into segment files and drops it.)

-- One row per index group (a contiguous range of journal rows indexed by one insert whose
-- insert_deduplication_token names the range): Done = 0 before the insert, 1 after. A group
-- found with Done = 0 after a crash is indexed again with the same token, so the store drops
-- what the crashed insert had already committed, and nothing is indexed twice. Rows of groups
-- whose journal segments were deleted are deleted with them (store/journal.drop_indexed).
CREATE TABLE IF NOT EXISTS {{db}}.mltrace_ingest_progress {{on_cluster}} (
    FromSeq UInt64,
    ToSeq UInt64,
    Done UInt8
) ENGINE = {{engine ReplacingMergeTree(Done)}}
ORDER BY (FromSeq, ToSeq);
