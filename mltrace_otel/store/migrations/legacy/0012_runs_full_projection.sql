-- Legacy: applied only to a store made before the 0100 baseline (store/schema.py), as it ran then.
-- Every column of mltrace_runs again, ordered by (Component, Start): reading the runs of a
-- trace or a review (recent runs of a few components) touches a few neighbouring granules
-- instead of one granule per run id (run ids are random, so the table's own order scatters
-- them). store/queries.fetch_runs passes the components and start range it knows so the
-- optimizer can pick it; history reads its rows from it directly.
ALTER TABLE {{db}}.mltrace_runs {{on_cluster}} ADD PROJECTION IF NOT EXISTS runs_full (SELECT * ORDER BY Component, Start);
ALTER TABLE {{db}}.mltrace_runs {{on_cluster}} MATERIALIZE PROJECTION runs_full;
