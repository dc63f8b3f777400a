"""The caller-side fast paths of a run give exactly what the general code gives: a request encoded
in one join parses as the OTel exporter's, one record appended with ``append_one`` is the record
``append`` writes, scalar fingerprints and one-value sketches match the general encoders, and a
hand-built run versions an input file once, when it is added."""

from __future__ import annotations

import math
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
    set_span_in_context,
)
from sdk_helpers import attr, runs

import mltrace_otel as mltrace
from mltrace_otel import conventions as C
from mltrace_otel import spool
from mltrace_otel.sdk import export, files, fingerprints, stats
from mltrace_otel.sdk.spans import to_ns
from mltrace_otel.sdk.wire import Envelope, encode_request


def _varied_spans() -> list:
    mem = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "s", "k": [1, 2]}),
                              span_limits=SpanLimits(max_events=2, max_links=1, max_span_attributes=5))
    provider.add_span_processor(SimpleSpanProcessor(mem))
    tracer = provider.get_tracer("scope", "2.0", schema_url="https://example.com/x")
    remote = SpanContext(trace_id=11, span_id=12, is_remote=True, trace_flags=TraceFlags(1),
                         trace_state=TraceState([("a", "1"), ("b", "2")]))
    with tracer.start_as_current_span("root", kind=SpanKind.SERVER, attributes={"x": 1}) as root:
        links = [Link(root.get_span_context(), {"io": "a"}), Link(remote, {"io": "b"})]  # one dropped
        with tracer.start_as_current_span("run", links=links, attributes={str(i): i for i in range(8)}) as s:
            for i in range(3):  # one event dropped
                s.add_event(f"e{i}", {"n": i, "f": -0.0, "b": True})
            s.set_status(Status(StatusCode.ERROR, "boom"))
        with tracer.start_as_current_span("ok", kind=SpanKind.CLIENT) as ok:
            ok.set_status(Status(StatusCode.OK))
    with tracer.start_as_current_span("remote child", context=set_span_in_context(NonRecordingSpan(remote))):
        pass
    with tracer.start_as_current_span("plain"):
        pass
    return list(mem.get_finished_spans())


def test_a_request_in_one_join_parses_as_the_exporters_for_every_span_shape():
    spans_ = _varied_spans()
    env = Envelope.of(spans_[0])
    for span in spans_:
        for _ in range(2):  # the second time from the caches
            got = ExportTraceServiceRequest.FromString(env.request((span,)))
            assert got == encode_spans([span]), span.name
            assert encode_request([span]) == env.request((span,))
    both = ExportTraceServiceRequest.FromString(env.request(spans_))
    assert both == encode_spans(spans_)


def test_append_one_writes_the_record_append_writes(tmp_path: Path):
    payload = bytes(random.Random(3).randbytes(900))
    seq = spool.next_seq(0)
    a, b = spool.SegmentWriter(tmp_path / "a"), spool.SegmentWriter(tmp_path / "b")
    a.append([spool.Entry(seq, 2, payload), spool.Entry(seq + 1, 1, b"x")])
    b.append_one(seq, 2, payload)
    b.append_one(seq + 1, 1, b"x")
    (pa,), (pb,) = a.detach(), b.detach()
    assert pa.read_bytes() == pb.read_bytes()
    records, corrupt, _ = spool.scan(pb)
    assert corrupt == 0 and [(r.seq, r.spans, r.length) for r in records] == [(seq, 2, 900), (seq + 1, 1, 1)]


def test_scalar_fingerprints_are_the_general_encoders():
    for v in ["", "a,b\n1,2\n", "h\u00e9llo \ud800", "x" * 100_000, 3.0, -0.0, math.inf, math.nan, 1e-300]:
        enc = fingerprints._Encoder()
        enc.feed(v, 0)
        assert fingerprints.fingerprint(v) == enc.h.hexdigest(), repr(v)[:40]


def test_one_value_and_small_list_summaries_are_the_sketchs():
    rng = random.Random(5)
    for _ in range(300):
        x = rng.choice([0.0, -0.0, 1e-12, rng.uniform(-1e9, 1e9), rng.expovariate(1)])
        s = stats.Sketch()
        s.add(x)
        assert stats._summaries(x)[0][1][C.STATS_SKETCH] == s.to_json()
        xs = [rng.choice([rng.uniform(-5, 5), 0.0, math.nan, 7, True]) for _ in range(rng.randint(1, 32))]
        finite = [float(v) for v in xs if math.isfinite(v)]
        (_, attrs), = stats._summaries(xs)
        assert attrs[C.STATS_COUNT] == len(xs) and attrs[C.STATS_NULLS] == len(xs) - len(finite)
        assert attrs[C.STATS_SKETCH] == stats.sketch_of(finite).to_json()
        ref = stats.Sketch()
        for v in finite:
            ref.add(v)
        assert (ref.pos, ref.neg, ref.zeros) == (stats.sketch_of(xs).pos, stats.sketch_of(xs).neg,
                                                  stats.sketch_of(xs).zeros)


def test_to_ns_is_exact_for_every_datetime():
    utc = timezone.utc
    for ts in [datetime(1900, 1, 1), datetime(1969, 12, 31, 23, 59, 59, 999_999), datetime.max,
               datetime.min, datetime(2262, 4, 12, tzinfo=utc), datetime.now(),
               datetime.now(timezone(timedelta(hours=-5, minutes=-30)))]:
        aware = ts if ts.tzinfo else ts.replace(tzinfo=utc)
        epoch = datetime(1970, 1, 1, tzinfo=utc)
        assert to_ns(ts) == ((aware - epoch) // timedelta(microseconds=1)) * 1000


def test_an_added_input_is_versioned_once_when_added(spans, tmp_path, monkeypatch):
    """add_input(s) takes a file's version then (the file may be rewritten before the run is
    logged); log_component_run does not look again, and versions inputs given otherwise."""
    monkeypatch.chdir(tmp_path)
    Path("in.csv").write_text("old\n")
    old = files.file_version("in.csv")
    cr = mltrace.ComponentRun("manual", inputs=["given.csv"])
    cr.set_start_timestamp()
    cr.add_input("given.csv")  # already there: its pointer stays, versioned when logged
    cr.add_input("in.csv")
    cr.add_inputs(["later.csv"])  # no such file when added
    Path("in.csv").write_text("new, and read\n")
    Path("later.csv").write_text("appeared\n")
    Path("given.csv").write_text("given\n")  # named at construction: versioned when logged
    cr.set_end_timestamp()
    mltrace.log_component_run(cr)
    (run,) = runs(spans)
    versions = dict(zip(attr(run, C.RUN_INPUTS), attr(run, C.RUN_INPUT_VERSIONS), strict=True))
    assert versions == {"given.csv": files.file_version("given.csv"), "in.csv": old, "later.csv": ""}
    assert old and versions["given.csv"]


def _each_form(tmp_path: Path) -> None:
    """One run of each documented form, with files, tags, notes, git tags and output statistics."""
    (tmp_path / "raw.csv").write_text("a\n1\n")

    class Positive(mltrace.Test):
        def testPositive(self, ovalues: list) -> None:
            assert ovalues[1] > 0

    comp = mltrace.Component("forms", owner="me", description="d", tags=["t1", "t2"])
    checked = mltrace.Component("checked", afterTests=[Positive])

    @mltrace.register("literal", inputs=[str(tmp_path / "raw.csv")], outputs=["out.pq"])
    def literal() -> None:
        pass

    @comp.run(input_vars=["raw"], output_vars=["out"])
    def with_vars() -> None:
        raw, out = str(tmp_path / "raw.csv"), "vars.pq"  # noqa: F841

    @checked.run(input_kwargs={"names": "values"}, output_kwargs={"onames": "ovalues"})
    def with_kwargs() -> None:
        names, values = ["in.csv"], ["a,b\n"]  # noqa: F841
        onames, ovalues = ["m.pkl", "s"], [[0.5, 1.5], 3.0]  # noqa: F841

    literal()
    with_vars()
    with_kwargs()
    cr = mltrace.ComponentRun("manual", notes="n", git_tags=["v1"], dependencies=["literal"])
    cr.set_start_timestamp()
    cr.add_inputs([str(tmp_path / "raw.csv"), "id-1"])
    cr.add_outputs(["manual.pq"])
    cr.set_end_timestamp()
    mltrace.log_component_run(cr)


def test_run_attributes_are_what_the_sdk_stores_when_given_them(spans, tmp_path):
    """mltrace puts its own attributes on a run's span without the SDK's per-value check
    (``spans.put``); every value must still be in the form the SDK itself stores (a sequence as a
    tuple, never a list), so exporters, processors and the encoder see the same span. Given the
    run's attributes, the SDK stores values equal to them and of the same types."""
    _each_form(tmp_path)
    recorded = runs(spans)
    assert [s.name for s in recorded] == ["literal", "forms", "checked", "manual"]
    tracer = TracerProvider().get_tracer("check")
    for s in recorded:
        given = dict(s.attributes)
        stored = dict(tracer.start_span("x", attributes=given).attributes)
        assert stored == given
        assert {k: type(v) for k, v in stored.items()} == {k: type(v) for k, v in given.items()}, s.name
        assert all(not isinstance(v, list) for v in given.values())
        for ev in s.events:  # output statistics and test outcomes, put the same way
            check = tracer.start_span("x")
            check.add_event(ev.name, dict(ev.attributes))
            (like,) = check.events
            assert dict(like.attributes) == dict(ev.attributes), ev.name
            assert [type(v) for v in like.attributes.values()] == [type(v) for v in ev.attributes.values()]
            assert type(ev.attributes) is type(like.attributes) and ev.dropped_attributes == 0
    names = [ev.name for ev in recorded[2].events]
    assert names.count(C.EVENT_OUTPUT_STATS) == 2 and names.count(C.EVENT_TEST) == 1
    manual = recorded[-1]
    assert attr(manual, C.RUN_UPSTREAM) == ["literal"] and attr(manual, C.GIT_TAGS) == ["v1"]
    assert attr(recorded[1], C.COMPONENT_TAGS) == ["t1", "t2"]


def test_what_user_code_sets_on_the_run_span_is_kept_and_checked(spans):
    """Inside a run, the current span is the run's: what the user sets on it is kept (a
    conventions key the run does not set itself too: notes), and a value OTel does not allow gets
    what the SDK's own check gives it on any span (dropped or replaced, by version)."""
    from opentelemetry import trace

    bad = object()  # not an OTel attribute value

    @mltrace.register("user", inputs=["a.csv"], outputs=["b.csv"])
    def step() -> None:
        span = trace.get_current_span()
        span.set_attribute("team.metric", 0.25)
        span.set_attribute(C.RUN_NOTES, "from the user")
        span.set_attribute("team.bad", bad)

    step()
    (run,) = runs(spans)
    plain = TracerProvider().get_tracer("check").start_span("plain")
    plain.set_attribute("team.bad", bad)
    assert run.attributes["team.metric"] == 0.25
    assert run.attributes[C.RUN_NOTES] == "from the user"
    assert ("team.bad" in run.attributes) == ("team.bad" in plain.attributes)
    assert run.attributes.get("team.bad") == plain.attributes.get("team.bad")
    assert attr(run, C.RUN_INPUTS) == ["a.csv"]


def test_put_falls_back_to_the_sdk_for_other_spans_and_at_the_limit():
    """A span that is not the SDK's, or one the attributes would take over its limit, gets
    ``set_attributes`` (so the SDK's limit and its count of dropped attributes hold)."""
    from mltrace_otel.sdk import spans as sdk_spans

    tracer = TracerProvider(span_limits=SpanLimits(max_span_attributes=3)).get_tracer("t")
    span = tracer.start_span("x", attributes={"a": 1})
    sdk_spans.put(span, {"b": ("x",), "c": 2, "d": 3})
    assert len(span.attributes) == 3 and span.dropped_attributes == 1
    plain = NonRecordingSpan(SpanContext(1, 2, False))
    sdk_spans.put(plain, {"b": 1})  # no error: a non-recording span ignores it
    span.end()
    sdk_spans.put(span, {"late": 1})  # ended: the SDK refuses with its own warning
    assert "late" not in span.attributes


def test_a_value_length_limit_applies_to_the_attributes_mltrace_puts(sdk_settings, monkeypatch, tmp_path):
    """OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT cuts every string the run carries, its own
    attributes and events included, as the SDK cuts any span's (mltrace then lets the SDK set
    them)."""
    monkeypatch.setenv("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "8")  # spans and events
    mem = InMemorySpanExporter()
    export.configure(settings=sdk_settings, exporter=mem)
    _each_form(tmp_path)
    recorded = runs(mem)
    assert len(recorded) == 4
    for s in recorded:
        for ev in [s, *s.events]:
            for k, v in ev.attributes.items():
                for x in (v if isinstance(v, tuple) else (v,)):
                    assert not isinstance(x, str) or len(x) <= 8, (s.name, k, x)
    assert recorded[1].attributes[C.COMPONENT_OWNER] == "me"
    assert recorded[1].attributes[C.COMPONENT_DESCRIPTION] == "d"
    assert recorded[0].attributes[C.CODE_SNAPSHOT] == "    @mlt"  # cut, as the SDK cuts it
    assert attr(recorded[3], C.RUN_OUTPUTS) == ["manual.p"]


def test_a_processor_added_by_the_user_sees_the_run_in_on_start(spans):
    """A span processor added with add_span_processor sees a run's attributes from on_start on,
    as it would on any span."""
    from opentelemetry.sdk.trace import SpanProcessor

    seen: list[dict] = []

    class Watch(SpanProcessor):
        def on_start(self, span, parent_context=None):  # noqa: ANN001
            seen.append(dict(span.attributes))

    export.add_span_processor(Watch())

    @mltrace.register("watched", inputs=["a.csv"], outputs=["b.csv"])
    def step() -> None:
        pass

    step()
    cr = mltrace.ComponentRun("manual")
    cr.set_start_timestamp()
    cr.add_inputs(["x"])
    cr.set_end_timestamp()
    mltrace.log_component_run(cr)
    assert [a.get(C.COMPONENT_NAME) for a in seen] == ["watched", "manual"]
    assert list(seen[0][C.RUN_INPUTS]) == ["a.csv"] and list(seen[1][C.RUN_INPUTS]) == ["x"]
