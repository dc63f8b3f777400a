"""A small pipeline written into a store as component-run spans, for the UI tests and bench.

``fill(store)`` logs, through a private OTel TracerProvider and ``store.insert_spans`` (exactly
what the SDK emits: the span conventions of :mod:`mltrace_otel.conventions`), a pipeline whose
names are awkward on purpose (slashes, spaces, quotes, unicode, ``<script>``):

ingest → clean → featuregen ─┐
              └→ split (FAILED) ─→ train → predict ×3      plus an ingest run 45 days old whose
                                                        consumer (audit) is stale, and 25 heartbeat runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from mltrace_otel import conventions as c

RAW = "raw/wine data.csv"
CLEAN = "clean/wine.csv"
FEATURES = 'features/ü-wine "v1".parquet'
TRAIN_SET = "train set.csv"
MODEL = "models/model <v1>.pkl"
PREDICTIONS = ("pred/0001", "pred/0002", "pred/0003")
OLD_RAW = "raw/old extract.csv"
OLD_CLEAN = "clean/old.csv"
SCRIPT_NOTE = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
CLEAN_CODE = ('def clean(df):\n    """Drop rows with nulls. <script>window.__pwned = 3</script>"""\n'
              "    out = df.dropna()  # ``` fences inside code must not break the block\n"
              "    return out\n")


@dataclass
class Filled:
    """Run ids of the filled pipeline, by role."""

    ids: dict[str, str] = field(default_factory=dict)
    heartbeat: list[str] = field(default_factory=list)


def _ns(t: datetime) -> int:
    return int(t.timestamp() * 1e9)


def fill(store, now: datetime | None = None) -> Filled:
    """Write the pipeline's runs into ``store``; their ids by role."""
    now = now or datetime.now(timezone.utc).replace(microsecond=0)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer(c.SCOPE_NAME)
    filled = Filled()

    def run(role: str, component: str, start: datetime, seconds: float, inputs=(), outputs=(),
            failed: str = "", tests=(), code: str = "", notes: str = "", owner: str = "ana",
            tags=("wine",)) -> None:
        attrs = {
            c.COMPONENT_NAME: component, c.COMPONENT_OWNER: owner, c.COMPONENT_TAGS: list(tags),
            c.COMPONENT_DESCRIPTION: f"the {component} step",
            c.RUN_INPUTS: list(inputs), c.RUN_OUTPUTS: list(outputs),
            c.RUN_INPUT_TYPES: ["DATA"] * len(inputs),
            c.RUN_OUTPUT_TYPES: ["MODEL" if o.endswith(".pkl") else "DATA" for o in outputs],
            c.VCS_REVISION: "3f2a9c1d8e7b6a5f4e3d2c1b0a9f8e7d6c5b4a39", c.GIT_TAGS: ["v1.2"],
            c.CODE_FUNCTION: component, c.CODE_FILE: "pipeline.py",
        }
        if code:
            attrs[c.CODE_SNAPSHOT] = code
        if notes:
            attrs[c.RUN_NOTES] = notes
        span = tracer.start_span(component, start_time=_ns(start), attributes=attrs)
        for name, method, phase, passed, message in tests:
            span.add_event(c.EVENT_TEST, {c.TEST_NAME: name, c.TEST_METHOD: method, c.TEST_PHASE: phase,
                                          c.TEST_PASSED: passed, c.TEST_MESSAGE: message},
                           timestamp=_ns(start))
        if failed:
            span.add_event(c.EVENT_EXCEPTION, {"exception.type": "ValueError", "exception.message": failed},
                           timestamp=_ns(start + timedelta(seconds=seconds)))
            span.set_status(Status(StatusCode.ERROR, f"ValueError: {failed}"))
        else:
            span.set_status(Status(StatusCode.OK))
        span.end(end_time=_ns(start + timedelta(seconds=seconds)))
        sid = format(span.get_span_context().span_id, "016x")
        if role:
            filled.ids[role] = sid
        else:
            filled.heartbeat.append(sid)

    t = now - timedelta(hours=3)
    run("old_ingest", "ingest", now - timedelta(days=45), 2.0, outputs=[OLD_RAW])
    run("audit", "audit", t - timedelta(minutes=30), 1.5, inputs=[OLD_RAW], outputs=[OLD_CLEAN],
        tags=("ops",))
    run("ingest", "ingest", t, 4.0, outputs=[RAW])
    run("clean", "clean", t + timedelta(minutes=5), 3.0, inputs=[RAW], outputs=[CLEAN], code=CLEAN_CODE,
        notes=SCRIPT_NOTE,
        tests=[("NullTest", "testNoNulls", "after", True, "")])
    run("featuregen", "featuregen", t + timedelta(minutes=10), 6.5, inputs=[CLEAN], outputs=[FEATURES])
    run("split", "split", t + timedelta(minutes=12), 1.0, inputs=[CLEAN], outputs=[TRAIN_SET],
        failed="label column is empty",
        tests=[("LabelTest", "testLabels", "before", False, "AssertionError: no labels")])
    run("train", "train", t + timedelta(minutes=20), 42.0, inputs=[FEATURES, TRAIN_SET], outputs=[MODEL],
        owner="bo", tags=("wine", "model"))
    for i, p in enumerate(PREDICTIONS):
        run(f"predict{i}", "predict", t + timedelta(minutes=30 + i), 0.4, inputs=[MODEL, FEATURES],
            outputs=[p], owner="bo")
    for i in range(25):
        run("", "heartbeat", t + timedelta(minutes=40 + i), 0.2 + 0.1 * (i % 5),
            failed="timeout" if i % 7 == 3 else "", tags=("ops",), owner="ops")
    provider.shutdown()
    result = store.insert_spans(exporter.get_finished_spans())
    assert result.rejected == 0, result.errors
    return filled
