-- Legacy: applied only to a store made before the 0100 baseline (store/schema.py), as it ran then.
-- Flags bind to an output's version (issue 14): a row per (pointer, run that wrote the flagged
-- version). RunId '' is a flag on a name no run had written when it was flagged (review lists it
-- as unproduced, or traces the name's latest writer once there is one). OutputVersion is the
-- content version that run wrote ("" unknown): another run that wrote the same version shows as
-- flagged too. The table stays ReplacingMergeTree(Version): the latest row per (Pointer, RunId)
-- wins. Only columns added in the same ALTER can join the sorting key (ClickHouse's rule).
ALTER TABLE {{db}}.mltrace_flags {{on_cluster}}
    ADD COLUMN IF NOT EXISTS RunId String AFTER Pointer,
    ADD COLUMN IF NOT EXISTS OutputVersion String AFTER RunId,
    MODIFY ORDER BY (Pointer, RunId);

-- Existing flags were per name, and meant the output's latest version (mltrace's review traced
-- the latest writer): each name flagged now is carried over to the run that wrote it last, with
-- a newer Version than its name-level row, so that row no longer applies (state.py: a RunId ''
-- row applies only while it is newer than every run-bound row of its pointer). Names no run
-- wrote keep their name-level row. Re-running this statement writes the same rows again (a
-- newer Version, same meaning).
INSERT INTO {{db}}.mltrace_flags (Pointer, RunId, OutputVersion, Flagged, Version)
SELECT w.Pointer, w.Writer, w.V, 1, now64(9)
FROM (
    SELECT Pointer, argMax(RunId, (Start, RunId)) AS Writer, argMax(Version, (Start, RunId)) AS V
    FROM {{db}}.mltrace_io
    WHERE Role = 'out' AND Pointer IN (
        SELECT Pointer FROM {{db}}.mltrace_flags WHERE RunId = ''
        GROUP BY Pointer HAVING argMax(Flagged, Version) = 1)
    GROUP BY Pointer
) AS w;
