-- The collector's ingest journal (store/journal.py, collector/indexer.py): with acknowledgement
-- "journaled" (the default on the embedded store) a request is answered once its serialized
-- bytes are committed here -- one cheap insert, no views -- and indexed into otel_traces (and
-- through the views the mltrace tables) in the background, many requests per insert. A
-- collector killed in between indexes the rest of its journal when it starts again.
--
-- One row per request. Seq: the collector's sequence number (nanoseconds since the epoch when
-- it was appended, strictly increasing). Partitions of 10 s: indexed partitions are dropped
-- whole (no mutation, no merge). Merges are off (max_bytes_to_merge_at_max_space_in_pool):
-- the rows live seconds, merging them would be wasted work.
CREATE TABLE IF NOT EXISTS {{db}}.mltrace_ingest_journal {{on_cluster}} (
    Seq UInt64,
    Spans UInt32,
    Payload String CODEC(LZ4)
) ENGINE = {{engine MergeTree()}}
PARTITION BY intDiv(Seq, 10000000000)
ORDER BY Seq
SETTINGS max_bytes_to_merge_at_max_space_in_pool = 1, non_replicated_deduplication_window = 0;

-- One row per index group (a contiguous range of journal rows indexed by one insert whose
-- insert_deduplication_token names the range): Done = 0 before the insert, 1 after. A group
-- found with Done = 0 after a crash is indexed again with the same token, so the store drops
-- what the crashed insert had already committed, and nothing is indexed twice. Rows of groups
-- whose journal partitions were dropped are deleted with them (store/journal.drop_indexed).
CREATE TABLE IF NOT EXISTS {{db}}.mltrace_ingest_progress {{on_cluster}} (
    FromSeq UInt64,
    ToSeq UInt64,
    Done UInt8
) ENGINE = {{engine ReplacingMergeTree(Done)}}
ORDER BY (FromSeq, ToSeq);
