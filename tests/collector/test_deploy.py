"""The production files declare what docs/collector.md and docs/deploy.md promise (Docker does
not run here, so the YAML is loaded and checked): services, published ports, the traces
pipeline, and an exporter writing into the store's own database and table. The durability,
secrets, startup and Grafana checks are in tests/test_deploy_*.py."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest

yaml = pytest.importorskip("yaml")

from mltrace_otel.settings import ENV_VARS, store_database  # noqa: E402
from mltrace_otel.store import ingest  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yaml").read_text())


@pytest.fixture(scope="module")
def otelcol() -> dict:
    return yaml.safe_load((ROOT / "otel-collector-config.yaml").read_text())


def _url(compose: dict) -> str:
    """MLTRACE_CLICKHOUSE_URL with the required password interpolated (as compose would)."""
    url = compose["services"]["mltrace-ui"]["environment"]["MLTRACE_CLICKHOUSE_URL"]
    return re.sub(r"\$\{CLICKHOUSE_PASSWORD:\?[^}]*\}", "pw", url)


def _published(service: dict) -> set[int]:
    return {int(str(p).split(":")[-1].split("/")[0]) for p in service.get("ports", [])}


def _mounts(service: dict) -> dict[str, str]:
    """{container path: host path} of the service's bind mounts."""
    out = {}
    for v in service.get("volumes", []):
        host, container = v.split(":")[:2]
        if host.startswith("."):
            out[container] = host
    return out


def test_compose_declares_every_service_with_its_ports(compose: dict) -> None:
    s = compose["services"]
    assert {"clickhouse", "otelcol", "jaeger", "prometheus", "mltrace-ui", "mltrace-migrate",
            "mltrace-collector"} <= set(s)
    assert _published(s["otelcol"]) == {4317, 4318}
    assert 16686 in _published(s["jaeger"])
    assert 9090 in _published(s["prometheus"])
    assert 8050 in _published(s["mltrace-ui"])
    assert 8123 in _published(s["clickhouse"])
    assert s["otelcol"]["image"].startswith("otel/opentelemetry-collector-contrib:")
    assert s["clickhouse"]["image"].startswith("clickhouse/clickhouse-server:")


def test_every_bind_mount_and_the_dockerfile_exist(compose: dict) -> None:
    for name, service in compose["services"].items():
        for host in _mounts(service).values():
            assert (ROOT / host).exists(), f"{name} mounts missing {host}"
        build = service.get("build")
        if build:
            dockerfile = ROOT / build["context"] / build["dockerfile"]
            assert dockerfile.is_file()
            text = dockerfile.read_text()
            assert 'ENTRYPOINT ["mltrace"]' in text and "pip install ." in text
    assert _mounts(compose["services"]["otelcol"])["/etc/otelcol-contrib/config.yaml"] == \
        "./otel-collector-config.yaml"


def test_mltrace_services_run_the_cli_on_the_clickhouse_server(compose: dict) -> None:
    s = compose["services"]
    assert "mltrace migrate && exit 0" in s["mltrace-migrate"]["command"][0]  # retried, bounded
    assert s["mltrace-ui"]["command"][0] == "ui"
    assert s["mltrace-collector"]["command"][0] == "collector"
    for name in ("mltrace-migrate", "mltrace-ui", "mltrace-collector"):
        env = s[name]["environment"]
        assert set(env) <= set(ENV_VARS), f"{name} sets an undocumented variable"
        url = _url({"services": {"mltrace-ui": s[name]}})
        assert urlsplit(url).hostname == "clickhouse" and urlsplit(url).port == 8123
        assert env["MLTRACE_HOST"] == "0.0.0.0"  # reachable from the other containers
    # the schema exists before anything writes or reads
    for name in ("otelcol", "mltrace-ui", "mltrace-collector"):
        assert s[name]["depends_on"]["mltrace-migrate"]["condition"] == "service_completed_successfully"
    assert s["mltrace-migrate"]["depends_on"]["clickhouse"]["condition"] == "service_healthy"


def test_otelcol_pipeline_batches_into_clickhouse_and_jaeger(otelcol: dict, compose: dict) -> None:
    pipeline = otelcol["service"]["pipelines"]["traces"]
    assert pipeline["receivers"] == ["otlp"]
    assert "batch" not in pipeline["processors"]  # batching is the exporter's, after its durable queue
    assert set(pipeline["exporters"]) == {"clickhouse", "otlp/jaeger"}
    for component in pipeline["processors"]:
        assert component in otelcol["processors"]
    for component in pipeline["exporters"]:
        assert component in otelcol["exporters"]
    protocols = otelcol["receivers"]["otlp"]["protocols"]
    ports = {int(p["endpoint"].rsplit(":", 1)[1]) for p in protocols.values()}
    assert ports == _published(compose["services"]["otelcol"])
    assert all(p["endpoint"].startswith("0.0.0.0:") for p in protocols.values())
    batch = otelcol["exporters"]["clickhouse"]["sending_queue"]["batch"]
    assert batch["min_size"] == 5000 and batch["flush_timeout"] == "1s"  # as mltrace's collector
    jaeger = otelcol["exporters"]["otlp/jaeger"]
    host, port = jaeger["endpoint"].rsplit(":", 1)
    assert host in compose["services"] and port == "4317"


def test_clickhouse_exporter_writes_the_stores_table_in_the_stores_database(
        otelcol: dict, compose: dict) -> None:
    ch = otelcol["exporters"]["clickhouse"]
    store_url = _url(compose)
    assert ch["database"] == store_database(store_url)
    assert ch["traces_table_name"] == ingest.TABLE
    assert ch["create_schema"] is False  # `mltrace migrate` owns the DDL (with the views)
    endpoint = urlsplit(ch["endpoint"])
    assert endpoint.hostname in compose["services"] and endpoint.port == 9000
    assert ch["username"] == urlsplit(store_url).username
    assert ch["password"] == "${env:CLICKHOUSE_PASSWORD}"
    assert "CLICKHOUSE_PASSWORD" in compose["services"]["otelcol"]["environment"]


def test_prometheus_scrapes_mltrace_metrics(compose: dict) -> None:
    prom_service = compose["services"]["prometheus"]
    mounts = _mounts(prom_service)
    prom = yaml.safe_load((ROOT / mounts["/etc/prometheus/prometheus.yml"]).read_text())
    jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
    target = jobs["mltrace"]["static_configs"][0]["targets"][0]
    host, port = target.rsplit(":", 1)
    assert jobs["mltrace"].get("metrics_path", "/metrics") == "/metrics"
    assert compose["services"][host]["command"][0] in ("collector", "server")
    assert port in [str(p) for p in compose["services"][host]["expose"]]  # the OTLP/HTTP port
    for rule_file in prom["rule_files"]:
        assert rule_file in mounts and (ROOT / mounts[rule_file]).is_file()
    assert "otelcol" in {t.split(":")[0] for j in jobs.values() for t in j["static_configs"][0]["targets"]}
    assert "/etc/prometheus/otelcol-alerts.yml" in prom["rule_files"]
