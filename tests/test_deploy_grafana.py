"""Grafana, Prometheus and Alertmanager of the compose deployment (issue 21, items 4 and 6):
the provisioning and dashboards load; every datasource uid a panel names is provisioned; every
metric name resolves against what is exported (otelcol's own series, by the names its
Prometheus exporter writes); the ClickHouse panels' SQL runs on a migrated store; the alert rules
pass promtool; Prometheus sends alerts to the Alertmanager service, whose routes name real
receivers.

Docker does not run here: Grafana itself does not load these files, the ClickHouse plugin's
provisioning keys are checked against its documentation
(https://grafana.com/docs/plugins/grafana-clickhouse-datasource/latest/configure/), and the SQL
runs on the embedded engine (a newer ClickHouse than the pinned server) with Grafana's macros
expanded by hand. On the old files there was no Grafana service, no provisioning and no
Alertmanager: every test here fails.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

# otelcol's own series as its Prometheus exporter writes them (counters with _total), defined in
# the core collector's exporter/exporterhelper and receiver/receiverhelper metadata.yaml
# (https://opentelemetry.io/docs/collector/internal-telemetry/#lists-of-internal-metrics).
OTELCOL_METRICS = {
    "otelcol_exporter_sent_spans_total",
    "otelcol_exporter_send_failed_spans_total",
    "otelcol_exporter_enqueue_failed_spans_total",
    "otelcol_exporter_queue_size",
    "otelcol_exporter_queue_capacity",
    "otelcol_receiver_accepted_spans_total",
    "otelcol_receiver_refused_spans_total",
}
METRIC = re.compile(r"\b((?:mltrace|otelcol)_[a-z0-9_]+)\b")
CLICKHOUSE_PLUGIN_KEYS = {
    "host",
    "port",
    "protocol",
    "secure",
    "username",
    "defaultDatabase",
    "tlsSkipVerify",
    "dialTimeout",
    "queryTimeout",
    "path",
    "httpHeaders",
    "customSettings",
    "logs",
    "traces",
    "version",
}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yaml").read_text())


def mounts(service: dict) -> dict[str, Path]:
    """{container path: repository file} of a service's bind mounts."""
    out = {}
    for v in service.get("volumes", []):
        src, dst = v.split(":")[:2]
        if src.startswith("./"):
            out[dst] = ROOT / src
    return out


@pytest.fixture(scope="module")
def grafana(compose: dict) -> dict[str, Path]:
    return mounts(compose["services"]["grafana"])


@pytest.fixture(scope="module")
def datasources(grafana: dict[str, Path]) -> list[dict]:
    out = []
    for f in sorted(grafana["/etc/grafana/provisioning/datasources"].glob("*.yaml")):
        out += yaml.safe_load(f.read_text())["datasources"]
    return out


@pytest.fixture(scope="module")
def dashboards(grafana: dict[str, Path]) -> dict[str, dict]:
    providers = []
    for f in grafana["/etc/grafana/provisioning/dashboards"].glob("*.yaml"):
        providers += yaml.safe_load(f.read_text())["providers"]
    (provider,) = providers
    folder = provider["options"]["path"]
    files = {dst: src for dst, src in grafana.items() if dst.startswith(folder + "/")}
    assert len(files) >= 2
    return {dst: json.loads(src.read_text()) for dst, src in files.items()}


def test_datasources_are_provisioned_against_the_compose_services(
    compose: dict, datasources: list[dict]
) -> None:
    s = compose["services"]
    by_type = {d["type"]: d for d in datasources}
    assert len({d["uid"] for d in datasources}) == len(datasources)
    prom = by_type["prometheus"]
    host, port = prom["url"].removeprefix("http://").split(":")
    assert host in s and port == "9090" and prom["isDefault"] is True
    ch = by_type["grafana-clickhouse-datasource"]
    assert set(ch["jsonData"]) <= CLICKHOUSE_PLUGIN_KEYS
    assert (
        ch["jsonData"]["host"] in s
        and ch["jsonData"]["port"] == 8123
        and ch["jsonData"]["protocol"] == "http"
    )
    url = s["mltrace-ui"]["environment"]["MLTRACE_CLICKHOUSE_URL"]
    assert ch["jsonData"]["username"] == url.split("//")[1].split(":")[0]
    assert ch["jsonData"]["defaultDatabase"] == url.rsplit("/", 1)[1]
    var = re.fullmatch(r"\$\{?([A-Z_]+)\}?", ch["secureJsonData"]["password"])
    assert var and var[1] in s["grafana"]["environment"], "the password comes from the environment"
    plugin = s["grafana"]["environment"]["GF_PLUGINS_PREINSTALL"]
    assert re.fullmatch(r"grafana-clickhouse-datasource@4\.\d+\.\d+", plugin), (
        "pin the plugin (v4 keys above)"
    )


def panels(dashboard: dict) -> list[dict]:
    out = []
    for p in dashboard["panels"]:
        out += [p] + p.get("panels", [])
    return [p for p in out if p["type"] != "row"]


def test_every_panel_datasource_resolves(dashboards: dict[str, dict], datasources: list[dict]) -> None:
    uids = {d["uid"]: d["type"] for d in datasources}
    types = set(uids.values())
    assert len({d["uid"] for d in dashboards.values()}) == len(dashboards)
    for path, d in dashboards.items():
        variables = {v["name"]: v for v in d.get("templating", {}).get("list", [])}
        for p in panels(d):
            for ds in [p.get("datasource")] + [t.get("datasource") for t in p.get("targets", [])]:
                if ds is None:
                    continue
                uid = ds["uid"]
                if uid.startswith("${"):
                    var = variables[uid[2:-1]]
                    assert var["type"] == "datasource" and var["query"] in types, (path, p["title"])
                else:
                    assert uids.get(uid) == ds["type"], (path, p["title"], ds)


def test_pipeline_view_reads_clickhouse_and_otelcol(dashboards: dict[str, dict]) -> None:
    d = next(d for d in dashboards.values() if d["uid"] == "mltrace-pipelines")
    titles = {p["title"] for p in panels(d)}
    assert {
        "Runs by component and status",
        "Stale latest runs",
        "Trace of one output",
        "Sending queue: size and capacity",
        "Export failures per second",
    } <= titles


def exprs(dashboards: dict[str, dict]) -> list[str]:
    return [
        t["expr"] for d in dashboards.values() for p in panels(d) for t in p.get("targets", []) if "expr" in t
    ]


def test_every_otelcol_metric_name_resolves(dashboards: dict[str, dict]) -> None:
    rules = yaml.safe_load((ROOT / "deploy/prometheus/otelcol-alerts.yml").read_text())
    texts = exprs(dashboards) + [r["expr"] for g in rules["groups"] for r in g["rules"]]
    used = {m for t in texts for m in METRIC.findall(t) if m.startswith("otelcol_")}
    assert {
        "otelcol_exporter_send_failed_spans_total",
        "otelcol_exporter_enqueue_failed_spans_total",
        "otelcol_exporter_queue_size",
    } <= used
    assert used <= OTELCOL_METRICS, used - OTELCOL_METRICS
    # mltrace_* series on these dashboards are checked against /metrics by
    # tests/metrics/test_dashboards.py (mltrace.json is the packaged dashboard it loads)
    packaged = ROOT / "mltrace_otel/dashboards/grafana/mltrace.json"
    assert any(
        src == packaged
        for src in mounts(
            {
                "volumes": [
                    v
                    for v in yaml.safe_load((ROOT / "docker-compose.yaml").read_text())["services"][
                        "grafana"
                    ]["volumes"]
                ]
            }
        ).values()
    )


def expand(sql: str, database: str) -> str:
    """Grafana's macros and variables, as the ClickHouse plugin expands them."""
    sql = re.sub(r"\$__timeFilter\((\w+)\)", r"\1 >= now() - INTERVAL 1 DAY AND \1 <= now()", sql)
    return sql.replace("${db}", database).replace("${output:sqlstring}", "'s3://bucket/model.pkl'")


def test_clickhouse_panels_run_on_a_migrated_store(dashboards: dict[str, dict], store: Any) -> None:
    ran = 0
    for d in dashboards.values():
        for p in panels(d):
            for t in p.get("targets", []):
                if "rawSql" in t:
                    sql = expand(t["rawSql"], store.database)
                    assert "$" not in sql, sql
                    store.query(f"panel {p['title']}", sql)
                    ran += 1
    assert ran >= 5


def promtool() -> str:
    path = shutil.which("promtool")
    if not path:
        pytest.skip("promtool missing: apt-get install -y prometheus")
    return path


def test_prometheus_config_rules_and_alertmanager(compose: dict, tmp_path: Path) -> None:
    prom_mounts = mounts(compose["services"]["prometheus"])
    cfg = yaml.safe_load(prom_mounts["/etc/prometheus/prometheus.yml"].read_text())
    for rule_file in cfg["rule_files"]:
        assert rule_file in prom_mounts, rule_file
    (target,) = cfg["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    host, port = target.split(":")
    am = compose["services"][host]
    assert port == "9093" and am["image"].startswith("prom/alertmanager:")
    am_cfg = yaml.safe_load(mounts(am)["/etc/alertmanager/alertmanager.yml"].read_text())
    receivers = {r["name"] for r in am_cfg["receivers"]}

    def routes(r: dict) -> list[dict]:
        return [r] + [x for c in r.get("routes", []) for x in routes(c)]

    assert all(r.get("receiver", am_cfg["route"]["receiver"]) in receivers for r in routes(am_cfg["route"]))
    # promtool on the same config with the container paths pointed at the repository's files
    local = dict(cfg, rule_files=[str(prom_mounts[f]) for f in cfg["rule_files"]])
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(local))
    check = subprocess.run(
        [promtool(), "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 5 rules found" in check.stdout  # otelcol-alerts.yml


def test_otelcol_alerts_fire_when_they_should() -> None:
    """promtool unit tests (tests/otelcol_alerts_test.yml): a ClickHouse outage fires the export
    alert, a filling queue the queue alert, a refused enqueue the enqueue alert; not before."""
    test = subprocess.run(
        [promtool(), "test", "rules", "otelcol_alerts_test.yml"],
        cwd=ROOT / "tests",
        capture_output=True,
        text=True,
    )
    assert test.returncode == 0, test.stdout + test.stderr
    assert "SUCCESS" in test.stdout
