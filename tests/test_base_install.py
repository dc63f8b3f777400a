"""The base install (``pip install mltrace-otel``, no extras) is the SDK and a CLI that asks a
server: built in a fresh venv from this tree, it decorates, exports over OTLP/HTTP, writes the
spool with no endpoint, queries a server's HTTP API, and names the ``server`` extra in one line
wherever it would need the store, the UI or the collector. Never imports chDB, Dash,
clickhouse-connect or Flask (checked here in this environment too, where they are installed).
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import types
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mltrace_otel.conventions import RUN_OUTPUTS

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("chdb", "dash", "clickhouse_connect", "flask", "pandas", "pyarrow", "grpc")
SERVER_ONLY = ("chdb", "dash", "clickhouse_connect", "flask")
EXTRA = "pip install 'mltrace-otel[server]'"

PIPELINE = textwrap.dedent('''
    import json, sys
    import mltrace_otel as mltrace

    c = mltrace.Component("base_probe", owner="ci", description="base install")

    @c.run(input_vars=["src"], output_vars=["dst"])
    def step(src):
        dst = src + ".out"
        return dst

    step("in.csv")
    step("again.csv")
    mltrace.flush()
    s = mltrace.delivery_stats()
    print(json.dumps({"exported": s.exported, "spooled": s.spooled, "dropped": s.dropped,
                      "destination": s.destination,
                      "loaded": sorted(m for m in %r if m in sys.modules)}))
''') % (HEAVY,)


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OTEL_", "MLTRACE_", "DB_", "SAVE_DIR", "PYTHON", "VIRTUAL_ENV"))}
    env.update(extra)
    return env


# --- in this environment (every extra installed) -------------------------------------------------
def test_importing_and_decorating_loads_no_server_module(tmp_path: Path) -> None:
    code = PIPELINE + textwrap.dedent('''
        import mltrace_otel.api, mltrace_otel.cli.app  # the query API's and the CLI's modules too
        print(json.dumps(sorted(m for m in %r if m in sys.modules)))
    ''') % (SERVER_ONLY,)
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         timeout=120, env=_clean_env(MLTRACE_DIR=str(tmp_path / "m")))
    assert out.returncode == 0, out.stderr
    first, second = out.stdout.splitlines()[-2:]
    assert json.loads(first)["loaded"] == [] and json.loads(first)["spooled"] == 2
    assert json.loads(second) == []


def test_grpc_export_without_the_grpc_extra_keeps_runs_in_the_spool(tmp_path: Path) -> None:
    """OTEL_EXPORTER_OTLP_PROTOCOL=grpc on an install without the grpc extra (grpc made
    unimportable here): the decorated call returns, one warning names the extra, the run is
    spooled (telemetry never breaks the pipeline)."""
    code = textwrap.dedent('''
        import sys
        sys.modules["grpc"] = None  # not installed
        import mltrace_otel as mltrace
        @mltrace.register("c", inputs=["a"], outputs=["b"])
        def f():
            return 7
        print(f(), mltrace.delivery_stats().spooled)
    ''')
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         timeout=120, env=_clean_env(MLTRACE_DIR=str(tmp_path / "m"),
                                                     OTEL_EXPORTER_OTLP_PROTOCOL="grpc",
                                                     OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9"))
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["7", "1"]
    assert "needs the grpc extra: pip install 'mltrace-otel[grpc]'" in out.stderr
    assert out.stderr.count("grpc extra") == 1


@pytest.mark.parametrize("missing", ["dash", "nothing_installs_this"])
def test_a_module_of_an_extra_missing_at_run_time_is_one_line(monkeypatch, missing: str) -> None:
    """Failure injection: the up-front check passes, then the UI's import fails. A module an
    extra installs becomes the one line naming the extra; any other stays a real error."""
    from typer.testing import CliRunner

    from mltrace_otel.cli import app as cli

    def absent(name: str) -> None:
        raise ModuleNotFoundError(f"No module named {missing!r}", name=missing)

    fake = types.ModuleType("mltrace_otel.dashboards.app")
    fake.__getattr__ = absent  # type: ignore[attr-defined] - PEP 562: ``from ... import run_ui`` fails
    monkeypatch.setitem(sys.modules, "mltrace_otel.dashboards.app", fake)
    monkeypatch.setattr(cli, "require_extra", lambda *a, **k: None)
    result = CliRunner().invoke(cli.app, ["ui"], env={"NO_COLOR": "1", "COLUMNS": "300"})
    if missing == "dash":
        assert result.exit_code == 1 and result.stdout == ""
        line = f"error: mltrace ui needs the server extra: {EXTRA} (dash is not installed)"
        assert result.stderr.strip() == line
    else:
        assert isinstance(result.exception, ModuleNotFoundError)


# --- a fresh venv with the base package only -----------------------------------------------------
@pytest.fixture(scope="module")
def base_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv holding ``pip install <this tree>`` without extras; its bin directory. The tree is
    copied first so that pip's build leaves nothing in the working tree."""
    root = tmp_path_factory.mktemp("base")
    src = root / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "mltrace_otel", src / "mltrace_otel",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    pip = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
                          "--disable-pip-version-check", str(src)],
                         capture_output=True, text=True, timeout=900, env=_clean_env())
    assert pip.returncode == 0, f"pip install (base) failed:\n{pip.stdout}\n{pip.stderr}"
    return venv / "bin"


def _run(bin_dir: Path, args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    if args[:2] == ["python", "-c"] and args[2] is PIPELINE:  # a file: its functions have source
        (cwd / "pipeline.py").write_text(PIPELINE)
        args = ["python", "pipeline.py"]
    return subprocess.run([str(bin_dir / args[0]), *args[1:]], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env=_clean_env(**env))


class _Receiver(BaseHTTPRequestHandler):
    posts: list[bytes]

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        if self.path == "/v1/traces":
            self.server.posts.append(body)  # type: ignore[attr-defined]
        self.send_response(200 if self.path == "/v1/traces" else 404)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[ThreadingHTTPServer]:
    """An OTLP/HTTP endpoint in this process that keeps every POST to /v1/traces (``.posts``)."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    httpd.posts = []  # type: ignore[attr-defined]
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.slow
def test_base_install_has_no_server_module_and_a_cli(base_venv: Path, tmp_path: Path) -> None:
    code = ("import importlib.util, json, sys, mltrace_otel; "
            f"print(json.dumps([m for m in {HEAVY!r} if importlib.util.find_spec(m) or m in sys.modules]))")
    out = _run(base_venv, ["python", "-c", code], tmp_path)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == []
    cli = _run(base_venv, ["mltrace", "--help"], tmp_path)
    assert cli.returncode == 0 and "history" in cli.stdout, cli.stderr


@pytest.mark.slow
def test_base_install_exports_over_otlp_http(base_venv: Path, tmp_path: Path, receiver) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    out = _run(base_venv, ["python", "-c", PIPELINE], tmp_path, MLTRACE_DIR=str(tmp_path / "m"),
               OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{receiver.server_port}")
    assert out.returncode == 0, out.stderr
    stats = json.loads(out.stdout.splitlines()[-1])
    assert stats["exported"] == 2 and stats["spooled"] == 0 and stats["dropped"] == 0, stats
    assert stats["destination"].startswith("otlp ") and stats["loaded"] == []
    spans = [sp for body in receiver.posts for rs in ExportTraceServiceRequest.FromString(body).resource_spans
             for ss in rs.scope_spans for sp in ss.spans]
    assert len(receiver.posts) >= 1 and [sp.name for sp in spans] == ["base_probe", "base_probe"]
    outputs = [[v.string_value for v in a.value.array_value.values]
               for sp in spans for a in sp.attributes if a.key == RUN_OUTPUTS]
    assert outputs == [["in.csv.out"], ["again.csv.out"]]


@pytest.mark.slow
def test_base_install_spools_then_queries_a_server(base_venv: Path, tmp_path: Path, tmp_settings) -> None:
    """No endpoint: the runs go to the spool (no engine needed to write it); a store here drains
    it, serves its HTTP API, and the base install's CLI and query functions ask that API."""
    from mltrace_otel.spool import pending
    from mltrace_otel.store import open_store
    from mltrace_otel.web_api import StoreHost

    env = {"MLTRACE_DIR": str(tmp_settings.mltrace_dir)}
    out = _run(base_venv, ["python", "-c", PIPELINE], tmp_path, **env)
    assert out.returncode == 0, out.stderr
    stats = json.loads(out.stdout.splitlines()[-1])
    assert stats["spooled"] == 2 and stats["exported"] == 0 and stats["loaded"] == [], stats
    assert pending(tmp_settings.spool_dir)

    store = open_store(tmp_settings)  # drains the spool the base install wrote
    try:
        assert [r.component for r in store.history("base_probe", 10)] == ["base_probe"] * 2
        host = StoreHost(store, drain_interval_s=0).start()
        env = {**env, "MLTRACE_SERVER_URL": host.url, "MLTRACE_TOKEN": host.token}

        cli = _run(base_venv, ["mltrace", "history", "base_probe", "--json"], tmp_path, **env)
        assert cli.returncode == 0, cli.stderr
        assert [r["component"] for r in json.loads(cli.stdout)] == ["base_probe"] * 2

        code = ("import mltrace_otel as m; [r] = m.get_history('base_probe', 1); "
                "print(r.component_name, r.outputs[0].name, 'def step' in r.code_snapshot, "
                "len(m.get_recent_run_ids()))")
        api = _run(base_venv, ["python", "-c", code], tmp_path, **env)
        assert api.returncode == 0, api.stderr
        assert api.stdout.split() == ["base_probe", "again.csv.out", "True", "2"]
    finally:
        store.close()


@pytest.mark.slow
@pytest.mark.parametrize("args", [["ui"], ["server"], ["collector"], ["recent"], ["demo"]])
def test_base_install_names_the_server_extra_in_one_line(base_venv: Path, tmp_path: Path,
                                                         args: list[str]) -> None:
    out = _run(base_venv, ["mltrace", *args], tmp_path, MLTRACE_DIR=str(tmp_path / "m"))
    assert out.returncode == 1 and out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and EXTRA in lines[0] and "Traceback" not in out.stderr, out.stderr
    if args[0] in ("ui", "server", "collector"):
        assert lines[0].startswith(f"error: mltrace {args[0]} needs the server extra")


@pytest.mark.slow
def test_base_install_query_functions_name_the_server_extra(base_venv: Path, tmp_path: Path) -> None:
    code = ("import mltrace_otel as m\nfrom mltrace_otel.errors import ConfigError\n"
            "try:\n    m.get_recent_run_ids()\nexcept ConfigError as e:\n    print(e)\n")
    out = _run(base_venv, ["python", "-c", code], tmp_path, MLTRACE_DIR=str(tmp_path / "m"))
    assert out.returncode == 0, out.stderr
    assert EXTRA in out.stdout and "MLTRACE_SERVER_URL" in out.stdout
