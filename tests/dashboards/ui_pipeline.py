"""A small pipeline logged through the real SDK, for the UI tests.

``log(settings)`` runs it with the SDK writing to ``settings``' spool (opening the store then
drains it); ``ids(store)`` finds the run ids by role. Names are awkward on purpose (slashes,
spaces, quotes, unicode, ``<script>``)::

    ingest → clean ─┬→ featuregen ──────┬→ train → predict ×3
                    └→ split (raises) ──┘
    ingest (ComponentRun, 45 days ago) → audit (stale: its input is 45 days old)
    heartbeat ×25 (every 7th raises), for paging and the history chart
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

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
HEARTBEATS = 25


@dataclass
class Filled:
    """Run ids of the logged pipeline, by role."""

    ids: dict[str, str] = field(default_factory=dict)


def log(settings) -> None:
    """Log the pipeline with the SDK into ``settings``' spool (exactly once per settings)."""
    from mltrace_otel.sdk import export
    from mltrace_otel.sdk.component import Component
    from mltrace_otel.sdk.run import ComponentRun, log_component_run
    from mltrace_otel.sdk.testing import Test

    class RowCount(Test):
        def testRows(self, rows: int) -> None:  # noqa: N802 - mltrace's naming
            assert rows > 0, "no rows"

    export.configure(settings=settings.replace(export="spool"))
    try:
        now = datetime.now(timezone.utc)
        old = ComponentRun("ingest", start_timestamp=now - timedelta(days=45),
                           end_timestamp=now - timedelta(days=45) + timedelta(seconds=30))
        old.add_output(OLD_RAW)
        log_component_run(old)
        audit = ComponentRun("audit", start_timestamp=now - timedelta(hours=3),
                             end_timestamp=now - timedelta(hours=3) + timedelta(seconds=2))
        audit.add_input(OLD_RAW)
        audit.add_output(OLD_CLEAN)
        log_component_run(audit)

        ingest_c = Component(name="ingest", owner="ana", description="reads the extract", tags=["wine"])
        feat_c = Component(name="featuregen", owner="ana", description="builds features", tags=["wine"],
                           afterTests=[RowCount])
        split_c = Component(name="split", owner="ana", description="train/test split", tags=["wine"])
        train_c = Component(name="train", owner="bo", description="fits the model", tags=["wine", "model"])
        predict_c = Component(name="predict", owner="bo", description="scores", tags=["wine"])
        beat_c = Component(name="heartbeat", owner="ops", description="liveness", tags=["ops"])

        @ingest_c.run(outputs=[RAW])
        def ingest() -> None:
            pass

        @feat_c.run(inputs=[CLEAN], outputs=[FEATURES])
        def featuregen() -> int:
            rows = 120
            return rows

        @split_c.run(inputs=[CLEAN], outputs=[TRAIN_SET])
        def split() -> None:
            raise ValueError("label column is empty")

        @train_c.run(inputs=[FEATURES, TRAIN_SET], outputs=[MODEL])
        def train() -> None:
            pass

        @predict_c.run(inputs=[MODEL, FEATURES], output_vars=["pred_id"])
        def predict(pred_id: str) -> str:
            return pred_id

        @beat_c.run
        def heartbeat(i: int) -> None:
            if i % 7 == 3:
                raise TimeoutError("no answer in 5 s")

        ingest()
        clean = ComponentRun("clean", notes=SCRIPT_NOTE, code_snapshot=CLEAN_CODE,
                             start_timestamp=datetime.now(timezone.utc))
        clean.add_input(RAW)
        clean.add_output(CLEAN)
        clean.set_end_timestamp(datetime.now(timezone.utc) + timedelta(seconds=3))
        log_component_run(clean)
        featuregen()
        try:
            split()
        except ValueError:
            pass
        train()
        for p in PREDICTIONS:
            predict(p)
        for i in range(HEARTBEATS):
            try:
                heartbeat(i)
            except TimeoutError:
                pass
        assert export.flush()
    finally:
        export.reset()


def ids(store) -> Filled:
    """The run ids of the logged pipeline, looked up in the store."""
    filled = Filled()
    for role in ("audit", "clean", "featuregen", "split", "train"):
        filled.ids[role] = store.history(role, 1)[0].id
    ingests = store.history("ingest", 2)
    filled.ids["ingest"], filled.ids["old_ingest"] = ingests[0].id, ingests[1].id
    for i, p in enumerate(PREDICTIONS):
        filled.ids[f"predict{i}"] = store.pointer(p).producers[0]
    return filled
