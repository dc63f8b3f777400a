-- Legacy: applied only to a store made before the 0100 baseline (store/schema.py), as it ran then.
-- Every run in mltrace_lineage, and a component's runs newest first from it in one read.
--
-- 1. mltrace_lineage_mv also writes one row for a run that wrote no output (Pointer '',
--    Version ''), so lineage_by_run serves every run by id (store/queries.fetch_runs needs no
--    read of mltrace_runs' thirty-odd columns for such runs) and history sees every run.
--    Pointer reads (store/lineage.py) never match these rows unless a run reads a pointer
--    named '', and then they skip rows whose run wrote nothing. MODIFY QUERY swaps the view's
--    query atomically; the rows of runs stored before are back-filled (a run back-filled twice
--    is de-duplicated like any ReplacingMergeTree row).
-- 2. Projections lineage_by_component (Component, Start, RunId, Row) and lineage_by_start
--    (Start, RunId, Row): history and recent read their runs' rows in one read
--    (store/queries.history, recent), where each read a page of ids from mltrace_runs'
--    runs_by_component / runs_by_start and then the rows by id (two engine reads of ~4 ms each).
-- 3. Projection runs_full (0012) is dropped: it held every column of mltrace_runs a second time
--    (ordered by Component, Start) for runs that wrote nothing, which (1) now covers.
ALTER TABLE {{db}}.mltrace_lineage {{on_cluster}} ADD PROJECTION IF NOT EXISTS lineage_by_component (SELECT Component, Start, RunId, Row ORDER BY Component, Start);
ALTER TABLE {{db}}.mltrace_lineage {{on_cluster}} ADD PROJECTION IF NOT EXISTS lineage_by_start (SELECT Start, RunId, Row ORDER BY Start);

ALTER TABLE {{db}}.mltrace_lineage_mv {{on_cluster}} MODIFY QUERY
SELECT o.1 AS Pointer, Start, RunId, Component, o.2 AS Version,
    toJSONString(tuple(RunId, TraceId, Component, toUnixTimestamp64Nano(Start),
        toUnixTimestamp64Nano(End), StatusCode, StatusMessage, Owner, Description, Tags, ServiceName,
        Inputs, InputVersions, InputTypes, Outputs, OutputVersions, OutputTypes, Upstream,
        StalenessThresholdS, Endpoint, GitHash, GitTags, CodeFunction, CodeFile, Notes, TestNames,
        TestMethods, TestPhases, TestPassed, TestMessages, Exception)) AS Row
FROM {{db}}.mltrace_runs
ARRAY JOIN if(empty(Outputs), [('', '')], arrayZip(Outputs, OutputVersions)) AS o;

INSERT INTO {{db}}.mltrace_lineage (Pointer, Start, RunId, Component, Version, Row)
SELECT '', Start, RunId, Component, '',
    toJSONString(tuple(RunId, TraceId, Component, toUnixTimestamp64Nano(Start),
        toUnixTimestamp64Nano(End), StatusCode, StatusMessage, Owner, Description, Tags, ServiceName,
        Inputs, InputVersions, InputTypes, Outputs, OutputVersions, OutputTypes, Upstream,
        StalenessThresholdS, Endpoint, GitHash, GitTags, CodeFunction, CodeFile, Notes, TestNames,
        TestMethods, TestPhases, TestPassed, TestMessages, Exception))
FROM {{db}}.mltrace_runs
WHERE empty(Outputs)
  AND RunId NOT IN (SELECT RunId FROM {{db}}.mltrace_lineage WHERE Pointer = '');

ALTER TABLE {{db}}.mltrace_lineage {{on_cluster}} MATERIALIZE PROJECTION lineage_by_component;
ALTER TABLE {{db}}.mltrace_lineage {{on_cluster}} MATERIALIZE PROJECTION lineage_by_start;

ALTER TABLE {{db}}.mltrace_runs {{on_cluster}} DROP PROJECTION IF EXISTS runs_full;
