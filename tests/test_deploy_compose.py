"""docker-compose.yaml, checked as far as it can be without Docker (issue 21, items 1, 5, 6):
every image pinned, healthchecks where the image can run one, `depends_on` with conditions, a
startup that converges (the ClickHouse healthcheck against the real listener, a migration that
retries, bounded), secrets without defaults, ports on 127.0.0.1 unless the user opts in,
`init: true` for the mltrace containers, no `build:` + `image:` pair for `docker compose pull`
to fail on, and a .dockerignore.

Docker does not run here (`docker compose config` / `up` cannot): the YAML is loaded and the
compose spec's interpolation rules (``${VAR:?msg}``, ``${VAR:-default}``, ``$$``) are applied
by hand below. On the old files: the default password, 0.0.0.0 ports, the loopback
healthcheck, the one-shot migration, the shared `image:` and the missing .dockerignore fail.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
MLTRACE = ("mltrace-migrate", "mltrace-ui", "mltrace-collector")
# images with nothing to run a healthcheck with (a single static binary): watched by Prometheus
NO_SHELL = {"otelcol": "OtelcolDown", "jaeger": None, "otelcol-queue-init": None}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yaml").read_text())


def interpolate(value: str, env: dict[str, str]) -> str:
    """The compose spec's interpolation: ${VAR}, ${VAR:-default}, ${VAR:?error}; $$ is a $."""

    def one(m: re.Match) -> str:
        name, op, arg = m["name"], m["op"], m["arg"]
        if op == ":?" and not env.get(name):
            raise ValueError(f"{name}: {arg}")
        if op == ":-" and not env.get(name):
            return arg
        return env.get(name, "")

    out = re.sub(r"(?<!\$)\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:[-?])(?P<arg>[^}]*))?\}", one, value)
    return out.replace("$$", "$")


def strings(node: object) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for v in node.values() for s in strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in strings(v)]
    return []


def test_every_image_is_pinned_and_nothing_both_builds_and_pulls(compose: dict) -> None:
    for name, service in compose["services"].items():
        if "build" in service:
            assert "image" not in service, (
                f"{name}: build + image: `docker compose pull` looks it up in a registry"
            )
            continue
        image = service["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and re.fullmatch(r"v?\d+(\.\d+)+", tag), f"{name}: {image} is not pinned to a release"
    assert compose["services"]["jaeger"]["image"].startswith("jaegertracing/jaeger:2.")


def test_healthchecks_and_depends_on_conditions(compose: dict) -> None:
    s = compose["services"]
    for name, service in s.items():
        one_shot = service.get("restart") == "no"
        if one_shot or name in NO_SHELL:
            continue
        assert "healthcheck" in service, f"{name} has no healthcheck"
    for name, service in s.items():
        deps = service.get("depends_on", {})
        assert isinstance(deps, dict), f"{name}: depends_on without conditions"
        for dep, cond in deps.items():
            assert dep in s, f"{name} depends on unknown {dep}"
            want = (
                "service_completed_successfully"
                if s[dep].get("restart") == "no"
                else "service_healthy"
                if "healthcheck" in s[dep]
                else "service_started"
            )
            assert cond["condition"] == want, (name, dep, cond)
    alerts = (ROOT / "deploy/prometheus/otelcol-alerts.yml").read_text()
    assert f"alert: {NO_SHELL['otelcol']}" in alerts


def test_clickhouse_healthcheck_asks_the_real_listener(compose: dict) -> None:
    """The entrypoint's temporary init server listens on 127.0.0.1 only (ClickHouse
    docker/server/entrypoint.sh: "Listen only on localhost until the initialization is done")."""
    test = " ".join(compose["services"]["clickhouse"]["healthcheck"]["test"][1:])
    assert "127.0.0.1" not in test and "localhost" not in test
    assert "$$HOSTNAME" in test and "--user mltrace" in test


def test_migration_retries_bounded_with_a_clear_message(compose: dict) -> None:
    migrate = compose["services"]["mltrace-migrate"]
    script = interpolate("\n".join(migrate["command"]), {})
    assert migrate["entrypoint"] == ["/bin/sh", "-c"]
    assert "mltrace migrate && exit 0" in script
    m = re.search(r"seq 1 (\d+)", script)
    assert m and 1 < int(m[1]) <= 60, "bounded retries"
    assert "gave up" in script and script.rstrip().endswith("exit 1")


def test_no_default_password_compose_refuses_to_start_without_one(compose: dict) -> None:
    texts = strings(compose)
    assert not any(re.search(r"\$\{(CLICKHOUSE_PASSWORD|GRAFANA_ADMIN_PASSWORD):-", t) for t in texts)
    url = compose["services"]["mltrace-ui"]["environment"]["MLTRACE_CLICKHOUSE_URL"]
    with pytest.raises(ValueError, match="CLICKHOUSE_PASSWORD"):
        interpolate(url, {})
    assert (
        interpolate(url, {"CLICKHOUSE_PASSWORD": "s3cret"}) == "http://mltrace:s3cret@clickhouse:8123/mltrace"
    )
    for name in ("clickhouse", "otelcol", "grafana"):
        env = compose["services"][name]["environment"]
        assert ":?" in env["CLICKHOUSE_PASSWORD"]
    assert ":?" in compose["services"]["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"]


def test_ports_listen_on_loopback_unless_the_user_opts_in(compose: dict) -> None:
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            host = interpolate(str(port), {}).rsplit(":", 2)[0]
            assert host == "127.0.0.1", f"{name} publishes {port} on {host!r}"
            assert interpolate(str(port), {"MLTRACE_BIND": "0.0.0.0"}).startswith("0.0.0.0:")


def test_mltrace_containers_get_an_init(compose: dict) -> None:
    for name in MLTRACE:
        assert compose["services"][name].get("init") is True, f"{name}: mltrace as PID 1 ignores SIGTERM"


def test_dockerignore_keeps_the_build_context_to_what_the_dockerfile_copies() -> None:
    lines = [x.strip() for x in (ROOT / ".dockerignore").read_text().splitlines()]
    ignore = [x for x in lines if x and not x.startswith("#")]
    assert ignore[0] == "*", "exclude everything, then let in what the Dockerfile copies"
    copies = re.findall(r"^COPY (.+?) \S+$", (ROOT / "deploy/Dockerfile").read_text(), re.M)
    assert copies
    for line in copies:
        for src in line.split():
            name = src.rstrip("*")
            assert f"!{name}" in ignore or f"!{name}/" in ignore, f"the Dockerfile copies {src}"


def test_named_volumes_are_declared(compose: dict) -> None:
    declared = set(compose.get("volumes") or {})
    for name, service in compose["services"].items():
        for v in service.get("volumes", []):
            src = v.split(":")[0]
            if not src.startswith((".", "/")):
                assert src in declared, f"{name}: volume {src} not declared"


def test_jaeger_v2_with_bounded_memory_receives_otelcols_copy(compose: dict) -> None:
    """Jaeger v2's config keys from jaegertracing/jaeger cmd/jaeger/internal/extension/jaegerquery/
    config.go (Config: storage, base_path, ui, ..., http, grpc) and the memory backend's
    max_traces; the old service was all-in-one 1.65 (v1) with an unbounded store."""
    jaeger = compose["services"]["jaeger"]
    assert re.fullmatch(r"jaegertracing/jaeger:2\.\d+\.\d+", jaeger["image"])
    mounted = {v.split(":")[1]: ROOT / v.split(":")[0] for v in jaeger["volumes"]}
    config_path = jaeger["command"][0].split("=", 1)[1]
    cfg = yaml.safe_load(mounted[config_path].read_text())
    query = cfg["extensions"]["jaeger_query"]
    assert set(query) <= {
        "storage",
        "base_path",
        "ui",
        "bearer_token_propagation",
        "multi_tenancy",
        "max_clock_skew_adjust",
        "enable_tracing",
        "http",
        "grpc",
    }
    backend = cfg["extensions"]["jaeger_storage"]["backends"][query["storage"]["traces"]]
    assert set(backend) == {"memory"} and 0 < backend["memory"]["max_traces"] <= 100_000
    (exporter,) = cfg["service"]["pipelines"]["traces"]["exporters"]
    assert cfg["exporters"][exporter]["trace_storage"] == query["storage"]["traces"]

    def mib(text: str) -> int:
        m = re.fullmatch(r"(\d+)\s*(MiB|m|g|GiB)", str(text))
        assert m, text
        return int(m[1]) * (1024 if m[2] in ("g", "GiB") else 1)

    assert mib(jaeger["environment"]["GOMEMLIMIT"]) < mib(jaeger["mem_limit"])
    otelcol = yaml.safe_load((ROOT / "otel-collector-config.yaml").read_text())
    host, port = otelcol["exporters"]["otlp/jaeger"]["endpoint"].rsplit(":", 1)
    assert host == "jaeger" and cfg["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"].endswith(f":{port}")
