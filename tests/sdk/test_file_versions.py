"""Issue 14.1: pointer names that are local files get content versions.

Through the real SDK on real files under tmp_path (the process's cwd moved there), reading the
span attributes back from an in-memory exporter, and once through the real embedded store and
``mltrace history --json``. Bad inputs (a vanishing file, no permission, a dangling link, a
FIFO, devices, a 50 GB sparse file) must neither break nor hang the user's function.
"""

# ruff: noqa: F841 - the decorated functions' locals are read by the SDK

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path

import pytest
from opentelemetry.trace import StatusCode
from sdk_helpers import attr, runs

import mltrace_otel as mltrace
from mltrace_otel import conventions as C
from mltrace_otel.sdk import export, files
from mltrace_otel.sdk.pointers import IOPointer, fingerprint

HEX32 = 32


@pytest.fixture
def cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in an empty directory with a data/ folder, as a pipeline would."""
    work = tmp_path / "work"
    (work / "data").mkdir(parents=True)
    monkeypatch.chdir(work)
    return work


def settle(*paths: str | Path) -> None:
    """Wait until the files are older than the cache's racy window (a real wait, no mocks)."""
    deadline = time.monotonic() + 5
    while any(files._racy(os.stat(p)) for p in paths):
        assert time.monotonic() < deadline
        time.sleep(0.02)


def by_name(mem: object, component: str) -> list:
    return [r for r in runs(mem) if r.name == component]


def io_versions(run: object) -> tuple[dict[str, str], dict[str, str]]:
    """({input name: version}, {output name: version}) of a run span."""
    ins = dict(zip(attr(run, C.RUN_INPUTS), attr(run, C.RUN_INPUT_VERSIONS), strict=True))
    outs = dict(zip(attr(run, C.RUN_OUTPUTS), attr(run, C.RUN_OUTPUT_VERSIONS), strict=True))
    return ins, outs


def three_step_pipeline() -> tuple:
    """The issue's pipeline, with file names as plain strings, decorated as mltrace's docs do."""

    @mltrace.register("extract", outputs=["data/raw.csv"])
    def extract(rows: str) -> None:
        Path("data/raw.csv").write_text(rows)

    cleaning = mltrace.Component("clean", owner="plumber")

    @cleaning.run(input_vars=["src"], output_vars=["dest"])
    def clean(src: str) -> str:
        text = Path(src).read_text()
        dest = "data/clean.csv"
        Path(dest).write_text(text.replace(" ", ""))
        return dest

    @mltrace.register("report", inputs=["data/clean.csv"], outputs=["report.txt"])
    def report() -> None:
        n = len(Path("data/clean.csv").read_text().splitlines())
        Path("report.txt").write_text(f"{n} lines\n")

    return extract, clean, report


# --- the pipeline of the issue -----------------------------------------------------------------


def test_plain_string_paths_get_content_versions_that_chain(spans, cwd):
    extract, clean, report = three_step_pipeline()

    extract("a,b\n1,2\n")
    clean("data/raw.csv")
    report()
    extract("a,b\n1,3\n")  # new content, same size
    os.utime("data/raw.csv", ns=(1, 1))  # an old mtime: the version must not care
    extract("a,b\n1,2\n")  # the first content again, with a new mtime

    e1, e2, e3 = (io_versions(r)[1]["data/raw.csv"] for r in by_name(spans, "extract"))
    assert len(e1) == HEX32 and len(e2) == HEX32
    assert e1 != e2  # content changed
    assert e3 == e1  # same content, rewritten: same version

    (c,) = by_name(spans, "clean")
    c_in, c_out = io_versions(c)
    assert c_in == {"data/raw.csv": e1}  # clean read what the first extract wrote
    (r,) = by_name(spans, "report")
    r_in, r_out = io_versions(r)
    assert r_in == {"data/clean.csv": c_out["data/clean.csv"]} and len(r_in["data/clean.csv"]) == HEX32
    assert r_out["report.txt"] == files.file_version("report.txt") != ""


def test_history_json_shows_the_versions_from_the_store(tmp_settings, store, cwd):
    from typer.testing import CliRunner

    from mltrace_otel.cli.app import app

    export.configure(settings=tmp_settings)
    extract, clean, report = three_step_pipeline()
    extract("id,amount\n1,10\n")
    clean("data/raw.csv")
    extract("id,amount\n1,11\n")
    assert mltrace.flush() and store.drain_spool() >= 1

    env = {"MLTRACE_DIR": str(tmp_settings.mltrace_dir), "MLTRACE_CLICKHOUSE_URL": None,
           "MLTRACE_EXPORT": None, "OTEL_EXPORTER_OTLP_ENDPOINT": None, "NO_COLOR": "1"}
    result = CliRunner().invoke(app, ["--store", tmp_settings.resolved_store_url, "history", "extract",
                                      "--json"], env=env)
    assert result.exit_code == 0, result.output
    newest, oldest = json.loads(result.stdout)
    (old_out,), (new_out,) = oldest["outputs"], newest["outputs"]
    assert old_out["name"] == new_out["name"] == "data/raw.csv"
    assert len(old_out["version"]) == HEX32 and len(new_out["version"]) == HEX32
    assert old_out["version"] != new_out["version"]
    (c,) = store.history("clean", limit=5)
    assert [(p.name, p.version) for p in c.inputs] == [("data/raw.csv", old_out["version"])]


def test_names_that_are_not_local_files_have_no_version(spans, cwd, monkeypatch):
    seen: list[str] = []
    real_lstat, real_access = os.lstat, os.access

    def counting_lstat(path, *a, **kw):  # spies: count, then make the real call
        seen.append(os.fspath(path))
        return real_lstat(path, *a, **kw)

    def counting_access(path, *a, **kw):
        seen.append(os.fspath(path))
        return real_access(path, *a, **kw)

    Path("data/x.csv").write_text("x\n")
    names = ["customers_table", "s3://bucket/x.csv", "gs://b/data/x.csv", "data/missing.csv",
             "record-42", "file://otherhost/data/x.csv"]

    @mltrace.register("mixed", inputs=names, outputs=["http://api/endpoint"])
    def mixed() -> int:
        return 7

    with monkeypatch.context() as m:
        m.setattr(files.os, "lstat", counting_lstat)
        if files._exists is not None:
            m.setattr(files, "_exists", counting_access)
        assert mixed() == 7
    (run,) = runs(spans)
    assert attr(run, C.RUN_INPUT_VERSIONS) == [""] * len(names)
    assert attr(run, C.RUN_OUTPUT_VERSIONS) == [""]
    # URLs are never looked up; other names cost one system call each (access, else lstat)
    assert sorted(seen) == ["customers_table", "data/missing.csv", "record-42"]
    assert mltrace.delivery_stats().unreadable_files == 0


def test_file_urls_and_path_values_version_like_plain_names(spans, cwd):
    Path("data/raw.csv").write_text("a\n1\n")
    plain = files.file_version("data/raw.csv")
    url = "file://" + str(cwd / "data" / "raw.csv")
    assert len(plain) == HEX32
    assert files.file_version(url) == plain
    assert files.file_version("file://localhost" + str(cwd / "data" / "raw.csv")) == plain
    # an in-memory Path value fingerprints to the same content version
    assert fingerprint(Path("data/raw.csv")) == plain
    assert IOPointer("raw", value=cwd / "data" / "raw.csv").version == plain
    assert fingerprint(Path("data/nothing.csv")) == ""

    @mltrace.register("by_url", inputs=[url])
    def by_url() -> None:
        return None

    by_url()
    assert attr(runs(spans)[0], C.RUN_INPUT_VERSIONS) == [plain]


# --- when versions are taken -----------------------------------------------------------------


def test_inputs_are_versioned_before_the_function_overwrites_them(spans, cwd):
    Path("state.json").write_text('{"n": 1}')
    before = files.file_version("state.json")

    @mltrace.register("bump", inputs=["state.json"], outputs=["state.json"])
    def bump() -> None:
        Path("state.json").write_text('{"n": 2}')

    component = mltrace.Component("bump_var")

    @component.run(input_vars=["path"], output_vars=["path"])
    def bump_var(path: str) -> None:
        Path(path).write_text('{"n": 3}')

    bump()
    after = files.file_version("state.json")
    bump_var("state.json")
    (r1,), (r2,) = by_name(spans, "bump"), by_name(spans, "bump_var")
    assert attr(r1, C.RUN_INPUT_VERSIONS) == [before] and attr(r1, C.RUN_OUTPUT_VERSIONS) == [after]
    assert before != after
    assert attr(r2, C.RUN_INPUT_VERSIONS) == [after]  # the argument's file, read at call time
    assert attr(r2, C.RUN_OUTPUT_VERSIONS) == [files.file_version("state.json")] != [after]


def test_async_and_generator_runs_version_inputs_before_their_body(spans, cwd):
    import asyncio

    Path("in.txt").write_text("before")
    before = files.file_version("in.txt")

    @mltrace.register("async_step", inputs=["in.txt"], outputs=["in.txt"])
    async def async_step() -> int:
        await asyncio.sleep(0)
        Path("in.txt").write_text("after!")
        return 1

    @mltrace.register("gen_step", inputs=["in.txt"])
    def gen_step():
        Path("in.txt").write_text("by generator")
        yield 1

    assert asyncio.run(async_step()) == 1
    after = files.file_version("in.txt")
    assert list(gen_step()) == [1]
    (a,), (g,) = by_name(spans, "async_step"), by_name(spans, "gen_step")
    assert attr(a, C.RUN_INPUT_VERSIONS) == [before] and attr(a, C.RUN_OUTPUT_VERSIONS) == [after]
    assert attr(g, C.RUN_INPUT_VERSIONS) == [after] and before != after


def test_a_failed_run_records_the_outputs_that_exist(spans, cwd):
    component = mltrace.Component("half")

    @component.run(inputs=["data/in.csv"], outputs=["data/part1.csv", "data/part2.csv"])
    def half() -> None:
        Path("data/part1.csv").write_text("done\n")
        raise RuntimeError("disk full")

    Path("data/in.csv").write_text("x\n")
    with pytest.raises(RuntimeError, match="disk full"):
        half()
    (run,) = runs(spans)
    assert run.status.status_code is StatusCode.ERROR
    assert attr(run, C.RUN_INPUT_VERSIONS) == [files.file_version("data/in.csv")]
    v1, v2 = attr(run, C.RUN_OUTPUT_VERSIONS)
    assert len(v1) == HEX32 and v2 == ""


def test_component_run_versions_inputs_when_added_and_outputs_when_logged(spans, cwd):
    Path("data/raw.csv").write_text("old\n")
    old = files.file_version("data/raw.csv")
    cr = mltrace.ComponentRun("manual")
    cr.set_start_timestamp()
    cr.add_input("data/raw.csv")
    cr.add_output("data/raw.csv")
    Path("data/raw.csv").write_text("new\n")  # rewritten in place after being added
    cr.set_end_timestamp()
    mltrace.log_component_run(cr)
    (run,) = runs(spans)
    assert attr(run, C.RUN_INPUT_VERSIONS) == [old]
    assert attr(run, C.RUN_OUTPUT_VERSIONS) == [files.file_version("data/raw.csv")] != [old]


# --- the cache -------------------------------------------------------------------------------


def test_an_unchanged_file_is_hashed_once(spans, cwd):
    Path("data/a.csv").write_bytes(os.urandom(300_000))
    Path("data/b.csv").write_bytes(os.urandom(300_000))
    settle("data/a.csv", "data/b.csv")

    @mltrace.register("join", inputs=["data/a.csv", "data/b.csv"], outputs=["table_out"])
    def join(i: int) -> int:
        return i

    files.clear_cache()
    for i in range(20):
        assert join(i) == i
    info = files.cache_info()
    assert info.hashed == 2 and info.hits == 38
    versions = {tuple(attr(r, C.RUN_INPUT_VERSIONS)) for r in runs(spans)}
    assert len(versions) == 1

    Path("data/a.csv").write_bytes(os.urandom(300_000))  # a change is seen at once
    join(99)
    assert files.cache_info().hashed == 3
    assert attr(runs(spans)[-1], C.RUN_INPUT_VERSIONS)[0] not in {v[0] for v in versions}


def test_same_size_rewrites_with_the_same_mtime_are_told_apart(cwd):
    p = Path("data/tick.csv")
    p.write_text("a,b\n1,2\n")
    os.utime(p, ns=(10**18, 10**18))
    first = files.file_version(str(p))
    p.write_text("a,b\n9,9\n")  # same size, then the same mtime: only content and ctime differ
    os.utime(p, ns=(10**18, 10**18))
    second = files.file_version(str(p))
    assert first != second and len(first) == len(second) == HEX32


# --- sizes and directories -------------------------------------------------------------------


def test_big_files_are_sampled_and_a_50_gb_sparse_file_is_not_read(spans, cwd):
    big = cwd / "data" / "huge.bin"
    with open(big, "wb") as f:
        f.truncate(50 * 1024**3)  # sparse: takes no space

    @mltrace.register("scan", inputs=[str(big)])
    def scan() -> str:
        return "ok"

    t0 = time.monotonic()
    assert scan() == "ok"
    assert time.monotonic() - t0 < 5  # 3 MiB read, not 50 GB
    (v,) = attr(runs(spans)[0], C.RUN_INPUT_VERSIONS)
    assert len(v) == HEX32
    with open(big, "r+b") as f:  # a change in the middle MiB changes the version
        f.seek(25 * 1024**3)
        f.write(b"x")
    assert files.file_version(str(big)) not in ("", v)


def test_hash_limit_setting_switches_to_sampling(sdk_settings, cwd):
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    p = Path("data/small.csv")
    p.write_text("a\n1\n")
    whole = files.file_version(str(p))
    export.configure(settings=sdk_settings.replace(hash_max_mb=0), exporter=InMemorySpanExporter())
    assert files.hash_limit() == -1  # 0 MB: every file sampled
    sampled = files.file_version(str(p))
    assert len(sampled) == HEX32 and sampled != whole
    os.utime(p, ns=(5, 5))  # sampled versions include the mtime
    assert files.file_version(str(p)) not in ("", sampled)
    assert files.file_version(str(p), limit=64 * files.MIB) == whole


def test_directories_are_versioned_by_their_listing(cwd, monkeypatch, caplog):
    d = cwd / "data" / "parts"
    (d / "sub").mkdir(parents=True)
    (d / "p0.csv").write_text("0\n")
    (d / "sub" / "p1.csv").write_text("1\n")
    v1 = files.file_version("data/parts")
    assert len(v1) == HEX32 and files.file_version("data/parts") == v1
    (d / "sub" / "p1.csv").write_text("11\n")  # nested size change
    v2 = files.file_version("data/parts")
    (d / "p2.csv").write_text("2\n")  # a new entry
    v3 = files.file_version("data/parts/")
    assert len({v1, v2, v3}) == 3

    monkeypatch.setattr(files, "MAX_DIR_ENTRIES", 2)
    with caplog.at_level(logging.WARNING, logger="mltrace_otel.sdk"):
        truncated = files.file_version("data/parts")
    assert len(truncated) == HEX32 and "covers its first 2 entries" in caplog.text


# --- bad inputs: no version, a warning, a count, and the function still returns ---------------


def call_with_timeout(fn: object, timeout_s: float = 20.0) -> object:
    """Call fn() on a thread; fail (not hang) if it does not return in time."""
    out: list[object] = []
    t = threading.Thread(target=lambda: out.append(fn()), daemon=True)  # type: ignore[operator]
    t.start()
    t.join(timeout_s)
    assert not t.is_alive(), "the decorated call hung"
    return out[0]


def bad_input_case(spans: object, caplog: pytest.LogCaptureFixture, name: str) -> tuple[str, str]:
    """Run a decorated function reading and writing ``name``, twice; check it returned each time,
    one warning named the path and the count went up per pointer per call. Returns the version
    and the warning."""

    @mltrace.register("reader", inputs=[name], outputs=[name])
    def reader() -> str:
        return "value"

    start = mltrace.delivery_stats().unreadable_files
    with caplog.at_level(logging.WARNING, logger="mltrace_otel.sdk"):
        assert call_with_timeout(reader) == "value"
        assert call_with_timeout(reader) == "value"
    run = runs(spans)[-1]
    assert attr(run, C.RUN_INPUTS) == [name]
    warnings = [r.getMessage() for r in caplog.records if name in r.getMessage()]
    assert len(warnings) == 1, caplog.text  # one per path, not per call
    assert mltrace.delivery_stats().unreadable_files - start == 4  # 2 calls x (input + output)
    (v,) = attr(run, C.RUN_INPUT_VERSIONS)
    assert attr(run, C.RUN_OUTPUT_VERSIONS) == [v]
    return v, warnings[0]


def test_a_fifo_is_never_opened(spans, cwd, caplog):
    os.mkfifo("data/pipe")
    assert bad_input_case(spans, caplog, "data/pipe") == ("", ANY_WITH("FIFO"))


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_device_files_are_never_read(spans, cwd, caplog, device):
    if not os.path.exists(device):
        pytest.skip(f"no {device}")
    assert bad_input_case(spans, caplog, device) == ("", ANY_WITH("character device"))


def test_a_dangling_symlink_gets_no_version(spans, cwd, caplog):
    os.symlink(cwd / "data" / "gone.csv", "data/link.csv")
    assert bad_input_case(spans, caplog, "data/link.csv") == ("", ANY_WITH("symbolic link"))


def test_a_file_without_read_permission_gets_no_version(spans, cwd, caplog):
    # as root every ordinary file is readable; write-only sysctls refuse reads even to root
    path = "/proc/sys/vm/drop_caches"
    try:
        with open(path, "rb"):
            pytest.skip(f"{path} is readable here")
    except PermissionError:
        pass
    except OSError:
        pytest.skip(f"no {path}")
    assert bad_input_case(spans, caplog, path) == ("", ANY_WITH("Permission denied"))


def test_a_file_that_vanishes_before_it_is_read(spans, cwd, caplog, monkeypatch):
    target = "data/tmp.csv"
    Path(target).write_text("x\n")
    real_open = os.open

    def vanish_then_open(path, *a, **kw):  # failure injection: deleted between stat and open
        if os.fspath(path) != target:
            return real_open(path, *a, **kw)
        os.unlink(target)
        try:
            return real_open(path, *a, **kw)
        finally:
            Path(target).write_text("x\n")  # back for the next look-up (io.open, not os.open)

    monkeypatch.setattr(files.os, "open", vanish_then_open)
    assert bad_input_case(spans, caplog, target) == ("", ANY_WITH("No such file"))


class ANY_WITH(str):  # noqa: N801 - reads as a matcher
    """Equal to any string containing this one."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and str.__contains__(other, str(self))

    __hash__ = str.__hash__
