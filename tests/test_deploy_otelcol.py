"""otel-collector-config.yaml, checked key by key against the config structs of the pinned
otelcol-contrib (issue 21, items 2 and 6). Docker does not run here, so the collector's own
`otelcol-contrib validate` cannot: this is the same check, written from the sources.

Pinned: otel/opentelemetry-collector-contrib:0.144.0 (docker-compose.yaml; the test below keeps
the two in step). The schema is written from (mapstructure tags):
- core exporterhelper queue/batch: opentelemetry-collector
  exporter/exporterhelper/internal/queuebatch/config.go (Config, BatchConfig, PartitionConfig and
  their Validate) at commit 0008bd9f, and exporter/exporterhelper/README.md at v0.144.0
  ("max_elapsed_time ... If set to 0, the retries are never stopped"; wait_for_result,
  block_on_overflow, sizer, storage, batch);
- configretry.BackOffConfig (retry_on_failure), exporterhelper.TimeoutConfig (timeout);
- contrib exporter/clickhouseexporter/config.go (Config: endpoint, username, password,
  database, connection_params, *_table_name, ttl, table_engine, cluster_name, create_schema,
  async_insert, metrics_tables) at commit 0769c478;
- contrib processor/memorylimiterprocessor (memorylimiter.Config: check_interval, limit_mib,
  spike_limit_mib, limit_percentage, spike_limit_percentage, min_gc_interval_when_*);
- contrib extension/storage/filestorage README (directory, timeout, fsync, create_directory,
  directory_permissions, compaction.*).
An unknown key makes otelcol refuse to start ("has invalid keys"), so a typo here fails.

On the old files: the batch processor acknowledged at receive time, the queue was in memory,
retries stopped after 300 s and memory_limiter used limit_percentage: the durability test fails.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONTRIB_VERSION = "0.144.0"

DURATION = "duration"
STR, INT, BOOL, LIST, MAP = str, int, bool, list, dict
ANY = object

TLS_CLIENT = {
    "insecure": BOOL,
    "insecure_skip_verify": BOOL,
    "ca_file": STR,
    "ca_pem": STR,
    "cert_file": STR,
    "cert_pem": STR,
    "key_file": STR,
    "key_pem": STR,
    "server_name_override": STR,
    "min_version": STR,
    "max_version": STR,
    "reload_interval": DURATION,
}
TLS_SERVER = {
    k: v
    for k, v in TLS_CLIENT.items()
    if k not in ("insecure", "insecure_skip_verify", "server_name_override")
}
TLS_SERVER |= {"client_ca_file": STR, "client_ca_file_reload": BOOL}

RETRY = {
    "enabled": BOOL,
    "initial_interval": DURATION,
    "randomization_factor": float,
    "multiplier": float,
    "max_interval": DURATION,
    "max_elapsed_time": DURATION,
}
BATCH = {
    "flush_timeout": DURATION,
    "sizer": ("items", "bytes"),
    "min_size": INT,
    "max_size": INT,
    "partition": {"metadata_keys": LIST},
}
QUEUE = {
    "enabled": BOOL,
    "wait_for_result": BOOL,
    "sizer": ("requests", "items", "bytes"),
    "queue_size": INT,
    "block_on_overflow": BOOL,
    "storage": STR,
    "num_consumers": INT,
    "batch": BATCH,
}

SCHEMA: dict[str, dict[str, Any]] = {
    "receivers": {
        "otlp": {
            "protocols": {
                "grpc": {
                    "endpoint": STR,
                    "transport": STR,
                    "tls": TLS_SERVER,
                    "max_recv_msg_size_mib": INT,
                    "max_concurrent_streams": INT,
                    "read_buffer_size": INT,
                    "write_buffer_size": INT,
                    "keepalive": MAP,
                    "auth": MAP,
                    "include_metadata": BOOL,
                },
                "http": {
                    "endpoint": STR,
                    "tls": TLS_SERVER,
                    "cors": MAP,
                    "auth": MAP,
                    "max_request_body_size": INT,
                    "include_metadata": BOOL,
                    "response_headers": MAP,
                    "traces_url_path": STR,
                    "metrics_url_path": STR,
                    "logs_url_path": STR,
                },
            }
        },
    },
    "processors": {
        "memory_limiter": {
            "check_interval": DURATION,
            "limit_mib": INT,
            "spike_limit_mib": INT,
            "limit_percentage": INT,
            "spike_limit_percentage": INT,
            "min_gc_interval_when_soft_limited": DURATION,
            "min_gc_interval_when_hard_limited": DURATION,
        },
        "batch": {
            "send_batch_size": INT,
            "send_batch_max_size": INT,
            "timeout": DURATION,
            "metadata_keys": LIST,
            "metadata_cardinality_limit": INT,
        },
    },
    "exporters": {
        "clickhouse": {
            "timeout": DURATION,
            "retry_on_failure": RETRY,
            "sending_queue": QUEUE,
            "endpoint": STR,
            "username": STR,
            "password": STR,
            "database": STR,
            "connection_params": MAP,
            "logs_table_name": STR,
            "traces_table_name": STR,
            "metrics_table_name": STR,
            "ttl": DURATION,
            "table_engine": {"name": STR, "params": STR},
            "cluster_name": STR,
            "create_schema": BOOL,
            "async_insert": BOOL,
            "metrics_tables": {
                k: STR for k in ("gauge", "sum", "summary", "histogram", "exponential_histogram")
            },
        },
        "otlp": {
            "endpoint": STR,
            "tls": TLS_CLIENT,
            "timeout": DURATION,
            "sending_queue": QUEUE,
            "retry_on_failure": RETRY,
            "compression": STR,
            "headers": MAP,
            "keepalive": MAP,
            "balancer_name": STR,
            "auth": MAP,
            "wait_for_ready": BOOL,
            "authority": STR,
        },
    },
    "extensions": {
        "health_check": {
            "endpoint": STR,
            "path": STR,
            "tls": TLS_SERVER,
            "check_collector_pipeline": MAP,
            "response_body": MAP,
        },
        "file_storage": {
            "directory": STR,
            "timeout": DURATION,
            "fsync": BOOL,
            "create_directory": BOOL,
            "directory_permissions": STR,
            "recreate": BOOL,
            "compaction": {
                "on_start": BOOL,
                "on_rebound": BOOL,
                "directory": STR,
                "max_transaction_size": INT,
                "rebound_needed_threshold_mib": INT,
                "rebound_trigger_threshold_mib": INT,
                "check_interval": DURATION,
                "cleanup_on_start": BOOL,
            },
        },
    },
}
SERVICE = {
    "extensions": LIST,
    "pipelines": MAP,
    "telemetry": {
        "metrics": {"level": ("none", "basic", "normal", "detailed"), "readers": LIST},
        "logs": MAP,
        "resource": MAP,
    },
}


def seconds(value: Any) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", str(value))
    assert m, f"not a Go duration: {value!r}"
    return float(m[1]) * {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}[m[2]]


def check(value: Any, schema: Any, where: str) -> None:
    if schema is ANY:
        return
    if schema == DURATION:
        seconds(value)
    elif isinstance(schema, tuple):
        assert value in schema, f"{where}: {value!r} is not one of {schema}"
    elif isinstance(schema, dict):
        assert isinstance(value, dict), f"{where}: expected a mapping, got {value!r}"
        unknown = set(value) - set(schema)
        assert not unknown, f"{where}: keys the pinned otelcol-contrib does not have: {sorted(unknown)}"
        for k, v in value.items():
            check(v, schema[k], f"{where}.{k}")
    elif schema is float:
        assert isinstance(value, (int, float)), f"{where}: {value!r}"
    elif schema is INT:
        assert isinstance(value, int) and not isinstance(value, bool), f"{where}: {value!r} is not an integer"
    elif schema is STR:
        assert isinstance(value, (str, int)), f"{where}: {value!r}"
    else:
        assert isinstance(value, schema), f"{where}: {value!r} is not {schema.__name__}"


@pytest.fixture(scope="module")
def config() -> dict:
    return yaml.safe_load((ROOT / "otel-collector-config.yaml").read_text())


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yaml").read_text())


def test_compose_pins_the_contrib_version_this_schema_was_written_from(compose: dict) -> None:
    assert (
        compose["services"]["otelcol"]["image"] == f"otel/opentelemetry-collector-contrib:{CONTRIB_VERSION}"
    )


def test_every_key_exists_in_the_pinned_config_structs(config: dict) -> None:
    assert set(config) <= {"receivers", "processors", "exporters", "extensions", "connectors", "service"}
    for section in ("receivers", "processors", "exporters", "extensions"):
        for name, body in (config.get(section) or {}).items():
            kind = name.split("/", 1)[0]
            assert kind in SCHEMA[section], f"{section}.{name}: no schema for component type {kind!r}"
            check(body or {}, SCHEMA[section][kind], f"{section}.{name}")
    check(config["service"], SERVICE, "service")


def test_the_structs_validate_methods_pass(config: dict) -> None:
    """What queuebatch.Config.Validate / BatchConfig.Validate / the service check at start."""
    service = config["service"]
    for ext in service["extensions"]:
        assert ext in config["extensions"], f"service.extensions names undeclared {ext}"
    for name, pipeline in service["pipelines"].items():
        for kind, section in (
            ("receivers", "receivers"),
            ("processors", "processors"),
            ("exporters", "exporters"),
        ):
            for component in pipeline.get(kind, []):
                assert component in config[section], f"pipeline {name} uses undeclared {component}"
    for name, exporter in config["exporters"].items():
        queue = exporter.get("sending_queue", {})
        assert queue.get("queue_size", 1000) > 0 and queue.get("num_consumers", 10) > 0, name
        if "storage" in queue:
            assert not queue.get("wait_for_result"), (
                f"{name}: wait_for_result is refused with a persistent queue"
            )
            assert queue["storage"] in service["extensions"], f"{name}: storage extension not enabled"
        batch = queue.get("batch")
        if batch:
            sizer = batch.get("sizer", queue.get("sizer", "requests"))
            assert sizer in ("items", "bytes"), f"{name}: batch supports only items or bytes sizers"
            assert seconds(batch["flush_timeout"]) > 0
            assert batch.get("max_size", 0) == 0 or batch["max_size"] >= batch.get("min_size", 0)
            if sizer == queue.get("sizer", "requests"):
                assert batch.get("min_size", 0) <= queue["queue_size"]


def test_nothing_acknowledged_is_lost_in_otelcol(config: dict, compose: dict) -> None:
    pipeline = config["service"]["pipelines"]["traces"]
    # the batch processor acknowledges spans once they are in its memory: batching is the exporter's
    assert "batch" not in pipeline["processors"], "use sending_queue.batch, not the batch processor"
    assert pipeline["processors"][0] == "memory_limiter"
    ch = config["exporters"]["clickhouse"]
    queue = ch["sending_queue"]
    assert queue["enabled"] is True and queue.get("block_on_overflow", False) is False
    storage = config["extensions"][queue["storage"]]
    assert queue["storage"].split("/")[0] == "file_storage" and storage.get("fsync") is True
    # the queue's directory is a named volume of the otelcol service (survives a restart / OOM)
    mounts = {v.split(":")[1]: v.split(":")[0] for v in compose["services"]["otelcol"]["volumes"]}
    volume = mounts.get(storage["directory"])
    assert volume in (compose.get("volumes") or {}), f"{storage['directory']} is not on a named volume"
    assert queue["batch"]["min_size"] == 5000 and seconds(queue["batch"]["flush_timeout"]) == 1
    retry = ch["retry_on_failure"]
    assert retry["enabled"] is True and seconds(retry["max_elapsed_time"]) == 0, "retries must never stop"


def test_memory_limits_mean_something(config: dict, compose: dict) -> None:
    limiter = config["processors"]["memory_limiter"]
    assert "limit_percentage" not in limiter, "a percentage of the whole host: the OOM killer comes first"
    mem_limit = compose["services"]["otelcol"]["mem_limit"]
    m = re.fullmatch(r"(\d+)([mg])", str(mem_limit).lower())
    assert m, mem_limit
    limit_mib = int(m[1]) * (1024 if m[2] == "g" else 1)
    assert limiter["limit_mib"] + limiter.get("spike_limit_mib", 0) < limit_mib
    assert limiter["spike_limit_mib"] < limiter["limit_mib"]


def test_jaeger_cannot_hold_back_clickhouse(config: dict) -> None:
    """The fan-out returns any exporter's error to the receiver: Jaeger's copy must fail fast
    (no retries) rather than fill a queue and refuse ClickHouse's spans with it."""
    jaeger = config["exporters"]["otlp/jaeger"]
    assert jaeger["retry_on_failure"]["enabled"] is False
    assert seconds(jaeger["timeout"]) <= 10
