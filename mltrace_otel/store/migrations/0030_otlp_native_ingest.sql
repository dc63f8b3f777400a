-- Native ingest (store/otlp_native.py): the collector inserts serialized OTLP requests into this
-- Null table (ClickHouse parses the protobuf), and otel_traces_otlp_mv renders every span as the
-- otel_traces row the contrib exporter writes -- so the materialized views over otel_traces
-- (0001, 0003, 0011) fill the mltrace tables exactly as for any other writer. Nothing is stored
-- in the Null table itself.
CREATE TABLE IF NOT EXISTS {{db}}.otel_traces_otlp {{on_cluster}} (
    resource_spans {{otlp_request_type}}
) ENGINE = Null;

-- Spans the SQL renderer leaves to Python (map values, nested arrays, duplicate keys), by the
-- batch's token; read back (and deleted) by the inserting process right after its insert.
CREATE TABLE IF NOT EXISTS {{db}}.otel_traces_otlp_deferred {{on_cluster}} (
    Batch String,
    TraceId String,
    SpanId String
) ENGINE = Memory;

CREATE MATERIALIZED VIEW IF NOT EXISTS {{db}}.otel_traces_otlp_mv {{on_cluster}}
TO {{db}}.otel_traces
AS {{otlp_rows}};

CREATE MATERIALIZED VIEW IF NOT EXISTS {{db}}.otel_traces_otlp_deferred_mv {{on_cluster}}
TO {{db}}.otel_traces_otlp_deferred (Batch String, TraceId String, SpanId String)
AS {{otlp_deferred_rows}};
