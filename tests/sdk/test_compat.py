"""Code written for mltrace runs unchanged or fails loudly (issue 20): unknown keywords, mltrace's
database settings, a server that is not there, ``mltrace.entities``, pointers as dicts, and
``input_vars`` holding data rather than names."""

# ruff: noqa: F841 - the decorated functions' locals are read by the SDK

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import pandas as pd
import pytest
from sdk_helpers import attr, runs

import mltrace_otel as mltrace
from mltrace_otel import conventions as C
from mltrace_otel.sdk import config
from mltrace_otel.settings import Settings


def test_unknown_run_keywords_raise_type_error_naming_them(spans):
    c = mltrace.Component("training", "an owner", "a description")
    with pytest.raises(TypeError) as e:
        c.run(component_name="training", input_filenames=["version"], output_filenames=["model_file"])
    msg = str(e.value)
    assert "'input_filenames'" in msg and "'output_filenames'" in msg
    with pytest.warns(RuntimeWarning, match="component_name='test_component'"):  # mltrace's tests
        c.run(component_name="test_component", inputs=["version"])
    with pytest.raises(TypeError, match="'input_filename'"):
        mltrace.register("training", input_filename=["version"])  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="positional"):
        c.run(["in"], ["out"], [], [], {}, {}, False, 60, False, "extra")
    assert runs(spans) == []


def test_renaming_keywords_must_name_a_test_parameter(spans):
    class Shape(mltrace.Test):
        def testRows(self, df):
            assert len(df) > 0

    c = mltrace.Component("featuregen", afterTests=[Shape])

    @c.run(df="features", skip_before=True)  # mltrace: the function's `features` is the tests' `df`
    def featurize():
        features = [1, 2]

    featurize()
    with pytest.raises(TypeError, match="'frame'"):
        c.run(frame="features")  # no test takes `frame`
    with pytest.raises(TypeError, match="'df'"):
        c.run(df=["features"])  # a rename is a variable name


def test_mltrace_entities_names():
    import mltrace_otel.entities as entities
    from mltrace_otel.entities import Component, ComponentRun, IOPointer, PointerTypeEnum, Test

    assert Component is mltrace.Component and ComponentRun is mltrace.ComponentRun
    assert IOPointer is mltrace.IOPointer and Test is mltrace.Test
    assert PointerTypeEnum is mltrace.PointerTypeEnum
    assert set(entities.__all__) >= {"Component", "ComponentRun", "IOPointer", "Test"}


def test_pointers_work_as_mltrace_017_dicts():
    p = mltrace.IOPointer("model.joblib", {"w": [1, 2]}, flag=True)
    assert p["name"] == "model.joblib" and p["value"] == {"w": [1, 2]}
    assert p["pointer_type"] is mltrace.PointerTypeEnum.MODEL and p["flag"] is True
    assert p["version"] == p.version != "" and p["version_kind"] == "content"
    read_back = mltrace.IOPointer("clean.csv", version="ab" * 16)  # as the query API builds them
    assert read_back["value"] == "ab" * 16  # 0.17 gave the stored hash of the value
    assert dict(read_back)["name"] == "clean.csv" and "flag" in read_back
    assert read_back.get("labels") is None
    with pytest.raises(KeyError):
        read_back["labels"]
    run = mltrace.ComponentRun("train", inputs=[read_back])
    assert run.inputs[0]["name"] == "clean.csv"


def test_set_db_uri_with_mltrace_postgres_uri_warns_once_and_keeps_the_store(sdk_settings):
    from mltrace_otel.sdk import export

    export.configure(settings=sdk_settings, exporter=None, sync=True)
    before = mltrace.get_db_uri()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mltrace.set_db_uri("postgresql://admin:secret@localhost:5432/sqlalchemy")
    (w,) = caught
    assert "MLTRACE_CLICKHOUSE_URL" in str(w.message) and "secret" not in str(w.message)
    assert mltrace.get_db_uri() == before

    @mltrace.register("after_set_db_uri")
    def go():
        return 1

    assert go() == 1 and mltrace.flush()
    assert mltrace.delivery_stats().spooled == 1


def test_db_uri_environment_variable(tmp_path, monkeypatch):
    from mltrace_otel import settings as settings_module

    monkeypatch.setattr(settings_module, "_warned_sql_urls", set())
    env = {"MLTRACE_DIR": str(tmp_path), "DB_URI": "postgresql://u:pw@db:5432/mltrace"}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s = Settings.from_env(env, lenient=True)
        Settings.from_env(env, lenient=True)
    assert len(caught) == 1 and "DB_URI" in str(caught[0].message) and "pw@" not in str(caught[0].message)
    assert s.resolved_store_url == Settings.from_env({"MLTRACE_DIR": str(tmp_path)}).resolved_store_url
    ours = Settings.from_env({"DB_URI": "http://ch:8123/db"})
    assert ours.store_url == "http://ch:8123/db"
    first = Settings.from_env({"DB_URI": "http://ch:8123/db", "MLTRACE_CLICKHOUSE_URL": "http://x:8123/y"})
    assert first.store_url == "http://x:8123/y"


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


_SERVER_DOWN = r"""
import json, sys, warnings
warnings.simplefilter("always")
import mltrace_otel as mltrace
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    if sys.argv[1] == "set_address":
        mltrace.set_address("127.0.0.1")
    elif sys.argv[1] == "none":  # the baseline: the same runs to the spool, no server named
        mltrace.set_db_uri(mltrace.get_db_uri())
    c = mltrace.Component("etl")
    @c.run(inputs=["raw.csv"], outputs=["clean.csv"])
    def etl():
        return None
    for _ in range(3):
        etl()
    mltrace.flush()
stats = mltrace.delivery_stats()
print(json.dumps({"warnings": [str(w.message) for w in caught],
                  "spooled": stats.spooled, "destination": stats.destination,
                  "exported": stats.exported, "export_failures": stats.export_failures}))
"""


def _server_down_run(tmp_path: Path, how: str) -> tuple[dict, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MLTRACE_", "DB_"))}
    env["MLTRACE_DIR"] = str(tmp_path / how)
    if how == "DB_SERVER":
        env["DB_SERVER"] = "127.0.0.1"
    out = subprocess.run([sys.executable, "-c", _SERVER_DOWN, how], capture_output=True, text=True,
                         timeout=60, env=env, check=False)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1]), out.stderr


@pytest.mark.parametrize("how", ["set_address", "DB_SERVER"])
def test_an_mltrace_server_that_is_not_there_costs_little_and_runs_are_kept(tmp_path, how):
    if _listening(4318):
        pytest.skip("something listens on port 4318 here")
    got, stderr = _server_down_run(tmp_path, how)
    baseline, _ = _server_down_run(tmp_path, "none")
    assert baseline["warnings"] == []
    (warning,) = got["warnings"]
    assert "nothing is listening at 127.0.0.1:4318" in warning and "spool" in warning
    # costs little: the one probe found nothing, so the runs go straight to the spool and no
    # export to the missing server is tried (each try retried with back-off took 2.8 s and more)
    assert got["spooled"] == 3 and got["destination"].startswith("spool")
    assert got["export_failures"] == 0 and got["exported"] == 0
    assert "Transient error" not in stderr and "retrying" not in stderr


def test_the_server_probe_asks_once_per_process():
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        port = srv.getsockname()[1]
        assert config._listening("127.0.0.1", port)
    assert config._listening("127.0.0.1", port)  # closed since, but not asked again
    config.clear_overrides()
    assert not config._listening("127.0.0.1", port)


def test_input_vars_holding_data_log_an_artifact_not_a_name(spans, sdk_settings):
    c = mltrace.Component("featuregen")

    @c.run(input_vars={"df": "customer_label"}, output_vars=["out_path"])  # mltrace 0.17's labels form
    def featurize(df: pd.DataFrame) -> pd.DataFrame:
        customer_label = ["user_1"]
        out_path = "features.csv"
        return df * 2

    frame = pd.DataFrame({"a": [1, 2, 3]})
    featurize(frame)
    (run,) = runs(spans)
    (name,) = attr(run, C.RUN_INPUTS)
    assert Path(name).parent == sdk_settings.artifact_dir / "values" and Path(name).exists()
    assert attr(run, C.RUN_INPUT_VERSIONS) == [mltrace.IOPointer("x", frame).version]
    assert attr(run, C.RUN_OUTPUTS) == ["features.csv"]
