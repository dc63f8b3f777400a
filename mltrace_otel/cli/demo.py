"""``mltrace demo``: a small instrumented ML pipeline, run a few times, so every view has data.

Five components (ingest → clean → featuregen → train → predict) classify generated "wine"
samples (pure Python, no download, no extra dependency) with a nearest-centroid model. The
passes are arranged so that a new user sees every view filled in:

- pass 1 reads a raw extract whose ingest run is backdated 45 days (logged with
  ``ComponentRun`` + ``log_component_run``): its clean run is **stale** ("was run 45 days ago");
- pass 2 gets mislabelled data, so train's ``AccuracyTest`` **fails** (the demo catches the
  error and goes on, like a scheduler would); its predictions are skipped;
- the last pass (of 3 or more) falls back to the first extract and the first model, as a job
  whose source is down and whose config is old would: its clean run read a 45-day-old input and
  its predict run used a model whose component has a fresher run (both **stale**, and they are
  the latest runs of their components, so ``mltrace stale`` lists them); passes in between are
  normal;
- four predictions made with model v1 (two from pass 1, two from the last pass) are
  **flagged**, so ``mltrace review`` ranks the runs they share (train v1 first).

Spans go to the local spool through the SDK (configured with the CLI's settings), then the
store is opened, drains the spool, and the flags are set. Every name carries a short session
tag, so running the demo twice never mixes two sessions' lineage.

May import: mltrace_otel.sdk (logging), mltrace_otel.store (drain, flags), rich.
"""

from __future__ import annotations

import json
import random
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from rich.console import Console

    from mltrace_otel.settings import Settings

FEATURES = ("alcohol", "acidity", "sugar", "sulphates")
ACCURACY_MIN = 0.75
BACKDATE_DAYS = 45
PREDICTIONS_PER_RUN = 5


@dataclass
class DemoResult:
    """What the demo made: the session tag, names worth trying and how many runs it logged."""

    tag: str
    runs: int = 0
    flagged: list[str] = field(default_factory=list)
    predictions: list[str] = field(default_factory=list)
    raw: list[str] = field(default_factory=list)
    failed_runs: list[str] = field(default_factory=list)
    data_dir: Path | None = None


# --- data (pure Python) ----------------------------------------------------------------------
def generate_rows(seed: int, n: int = 240, mislabel: bool = False) -> list[dict[str, Any]]:
    """Generated wine samples: four features, label 1 = "good"; a few rows have a missing value.
    ``mislabel`` makes half the labels random (the bad extract that makes train's test fail)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        good = rng.random() < 0.5
        row: dict[str, Any] = {
            "id": i,
            "alcohol": rng.gauss(12.8 if good else 11.2, 0.6),
            "acidity": rng.gauss(2.0 if good else 3.1, 0.5),
            "sugar": rng.gauss(2.5, 0.8),
            "sulphates": rng.gauss(0.75 if good else 0.55, 0.1),
            "label": int(good),
        }
        if mislabel and rng.random() < 0.5:
            row["label"] = 1 - row["label"]
        if rng.random() < 0.04:
            row[rng.choice(FEATURES)] = None
        rows.append(row)
    return rows


def _write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    cols = list(rows[0]) if rows else ["id", *FEATURES, "label"]
    lines = [",".join(cols)]
    for r in rows:
        lines.append(",".join("" if r[c] is None else f"{r[c]}" for c in cols))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _read_rows(path: Path) -> list[dict[str, Any]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    cols = lines[0].split(",")
    out = []
    for line in lines[1:]:
        vals = line.split(",")
        out.append({c: (None if v == "" else float(v)) for c, v in zip(cols, vals, strict=False)})
    return out


# --- the pipeline ----------------------------------------------------------------------------
def _build(data_dir: Path) -> dict[str, Any]:
    """Define the components, tests and decorated functions (after the SDK is configured)."""
    from mltrace_otel.sdk.component import Component
    from mltrace_otel.sdk.testing import Test

    class NotEmptyTest(Test):
        def __init__(self) -> None:
            super().__init__(name="not_empty")

        def testHasRows(self, rows: list) -> None:
            assert rows, "no rows left after cleaning"

    class AccuracyTest(Test):
        def __init__(self) -> None:
            super().__init__(name="accuracy")

        def testAccuracy(self, accuracy: float) -> None:
            assert accuracy >= ACCURACY_MIN, f"accuracy {accuracy:.2f} is below {ACCURACY_MIN}"

    ingest_c = Component(name="ingest", owner="data-eng", description="Pulls the raw wine extract",
                         tags=["etl", "demo"])
    clean_c = Component(name="clean", owner="data-eng", description="Drops rows with missing values",
                        tags=["etl", "demo"], afterTests=[NotEmptyTest])
    featuregen_c = Component(name="featuregen", owner="data-eng",
                             description="Standardizes the features", tags=["features", "demo"])
    train_c = Component(name="train", owner="ml-team", description="Nearest-centroid classifier",
                        tags=["model", "demo"], afterTests=[AccuracyTest])
    predict_c = Component(name="predict", owner="ml-team", description="Scores new samples",
                          tags=["serving", "demo"])

    @ingest_c.run(output_vars=["raw_name"])
    def ingest(raw_name: str, seed: int, mislabel: bool) -> str:
        rows = generate_rows(seed, mislabel=mislabel)
        _write_rows(data_dir / raw_name, rows)
        return raw_name

    @clean_c.run(input_vars=["raw_name"], output_vars=["clean_name"])
    def clean(raw_name: str, clean_name: str) -> str:
        rows = [r for r in _read_rows(data_dir / raw_name) if all(r[f] is not None for f in FEATURES)]
        _write_rows(data_dir / clean_name, rows)
        return clean_name

    @featuregen_c.run(input_vars=["clean_name"], output_vars=["features_name"])
    def featuregen(clean_name: str, features_name: str) -> str:
        rows = _read_rows(data_dir / clean_name)
        for f in FEATURES:
            vals = [r[f] for r in rows]
            mean = sum(vals) / len(vals)
            sd = (sum((v - mean) ** 2 for v in vals) / len(vals)) ** 0.5 or 1.0
            for r in rows:
                r[f] = (r[f] - mean) / sd
        _write_rows(data_dir / features_name, rows)
        return features_name

    @train_c.run(input_vars=["features_name"], output_vars=["model_name"])
    def train(features_name: str, model_name: str) -> float:
        rows = _read_rows(data_dir / features_name)
        cut = int(len(rows) * 0.75)
        fit, hold = rows[:cut], rows[cut:]
        centroids = {}
        for label in (0.0, 1.0):
            members = [r for r in fit if r["label"] == label] or fit
            centroids[str(int(label))] = [sum(r[f] for r in members) / len(members) for f in FEATURES]
        model = {"features": list(FEATURES), "centroids": centroids}
        (data_dir / model_name).write_text(json.dumps(model), encoding="utf-8")
        accuracy = sum(_classify(model, r) == r["label"] for r in hold) / max(1, len(hold))
        return accuracy

    @predict_c.run(input_vars=["model_name", "features_name"], output_vars=["prediction_ids"])
    def predict(model_name: str, features_name: str, prediction_ids: list[str]) -> list[int]:
        model = json.loads((data_dir / model_name).read_text(encoding="utf-8"))
        rows = _read_rows(data_dir / features_name)[-len(prediction_ids):]
        predictions = [_classify(model, r) for r in rows]
        return predictions

    return {"ingest": ingest, "clean": clean, "featuregen": featuregen, "train": train,
            "predict": predict}


def _classify(model: dict[str, Any], row: dict[str, Any]) -> int:
    def dist(c: list[float]) -> float:
        return sum((row[f] - v) ** 2 for f, v in zip(model["features"], c, strict=True))

    return min((0, 1), key=lambda label: dist(model["centroids"][str(label)]))


def _log_backdated_ingest(raw_name: str, data_dir: Path, seed: int) -> None:
    """The pass-1 extract, as if ingested 45 days ago (mltrace's explicit logging API)."""
    from mltrace_otel.sdk.run import ComponentRun, log_component_run

    _write_rows(data_dir / raw_name, generate_rows(seed))
    start = datetime.now(timezone.utc) - timedelta(days=BACKDATE_DAYS)
    cr = ComponentRun("ingest", start_timestamp=start, end_timestamp=start + timedelta(seconds=95),
                      notes=f"nightly extract, {BACKDATE_DAYS} days old")
    cr.add_output(raw_name)
    log_component_run(cr)


def _land(q: Any, settings: Settings, wait_s: float = 30.0) -> None:
    """Get the spooled runs into the store: drain them here, or (when another process holds
    the embedded store and announces its API) wait for that process to drain them."""
    if getattr(q, "remote", False):
        from mltrace_otel.store.connect import wait_drained

        wait_drained(settings.spool_dir, wait_s)
    else:
        q.store.drain_spool()


def _steps(passes: int) -> int:
    # pass 1: 5 runs; pass 2: 4 (train fails, no predict); middle passes: 5; last (>= 3): 3.
    return 5 + (4 if passes >= 2 else 0) + 5 * max(0, passes - 3) + (3 if passes >= 3 else 0)


def run_demo(settings: Settings, console: Console, passes: int = 3, seed: int = 7) -> DemoResult:
    """Run the demo pipeline ``passes`` times into the configured store; print what to try next.

    Raises:
        StoreUnavailable: the store cannot be opened (checked before anything is logged).
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from mltrace_otel.cli.common import open_queries
    from mltrace_otel.cli.render import escape
    from mltrace_otel.sdk import export

    tag = secrets.token_hex(2)
    result = DemoResult(tag=tag)
    data_dir = settings.mltrace_dir / "demo" / tag
    data_dir.mkdir(parents=True, exist_ok=True)
    result.data_dir = data_dir

    # fail fast when the store is unreachable; --server is not for the demo (its runs land here)
    with open_queries(settings.replace(server_url=None)) as q:
        export.configure(settings=settings.replace(export="spool"))
        fns = _build(data_dir)

        def names(i: int) -> tuple[str, str, str, str]:
            return (f"wine_raw_{tag}_v{i}.csv", f"wine_clean_{tag}_v{i}.csv",
                    f"wine_features_{tag}_v{i}.csv", f"wine_model_{tag}_v{i}.json")

        good_models: list[str] = []
        v1_predictions: list[str] = []
        progress = Progress(TextColumn("[bold]{task.description:<34}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), console=console, transient=False)
        with progress:
            task = progress.add_task("demo pipeline", total=_steps(passes))

            def step(label: str, fn: Any, *args: Any) -> Any:
                progress.update(task, description=label)
                try:
                    return fn(*args)
                finally:
                    result.runs += 1
                    progress.advance(task)

            def predict(i: int, model: str, features: str) -> list[str]:
                ids = [f"pred-{tag}-{i}{j:02d}" for j in range(1, PREDICTIONS_PER_RUN + 1)]
                label = f"pass {i}: predict with model {model.rsplit('_', 1)[-1]}"
                step(label, fns["predict"], model, features, ids)
                result.predictions.extend(ids)
                return ids

            for i in range(1, passes + 1):
                raw, clean, features, model = names(i)
                if i > 2 and i == passes:
                    # the last pass falls back to the first extract and the first model (the
                    # source is down, the job config is old): both of its runs end up stale
                    step(f"pass {i}: clean (old extract)", fns["clean"], result.raw[0], clean)
                    step(f"pass {i}: featuregen", fns["featuregen"], clean, features)
                    v1_predictions += predict(i, good_models[0], features)
                    continue
                result.raw.append(raw)
                if i == 1:
                    step(f"pass {i}: ingest (45 days ago)", _log_backdated_ingest, raw, data_dir, seed)
                else:
                    step(f"pass {i}: ingest", fns["ingest"], raw, seed + i, i == 2)
                step(f"pass {i}: clean", fns["clean"], raw, clean)
                step(f"pass {i}: featuregen", fns["featuregen"], clean, features)
                try:
                    step(f"pass {i}: train", fns["train"], features, model)
                except Exception as e:  # the demo's failing test: record it and go on
                    progress.console.print(f"[yellow]pass {i}: train failed its test, as planned[/yellow] "
                                           f"[dim]({escape(type(e).__name__)}: {escape(e)})[/dim]",
                                           soft_wrap=not console.is_terminal)
                    continue
                good_models.append(model)
                ids = predict(i, model, features)
                if i == 1:
                    v1_predictions += ids
            progress.update(task, description="done")
        export.flush()

        _land(q, settings)
        result.flagged = v1_predictions[1:3] + v1_predictions[-2:] if len(v1_predictions) > 4 \
            else list(v1_predictions)
        if result.flagged:
            q.flag(result.flagged)
        for run in q.history("train", passes + 1):
            if run.failed:
                result.failed_runs.append(run.id)
    _print_next(console, settings, result)
    return result


def _print_next(console: Console, settings: Settings, result: DemoResult) -> None:
    from mltrace_otel.cli.render import escape
    from mltrace_otel.settings import mask_url

    soft = not console.is_terminal  # piped: one line each, never hard-wrapped
    store = "" if settings.store_url is None else f" --store {mask_url(settings.store_url)}"
    console.print(f"\n[bold green]Logged {result.runs} runs[/bold green] (session [cyan]{result.tag}[/cyan]) "
                  f"into {escape(mask_url(settings.resolved_store_url))}; data in {escape(result.data_dir)}.",
                  soft_wrap=soft)
    if result.flagged:
        console.print(f"Flagged {len(result.flagged)} predictions as wrong: "
                      f"{escape(', '.join(result.flagged))}.", soft_wrap=soft)
    tries = [("mltrace recent", "the newest runs")]
    if result.flagged:
        tries.append((f"mltrace trace {result.flagged[-1]}", "how a flagged prediction was made"))
        tries.append(("mltrace review", "what the flagged predictions have in common"))
    tries.append(("mltrace stale", "runs that used old or superseded inputs"))
    if result.failed_runs:
        tries.append((f"mltrace inspect {result.failed_runs[0][:8]}", "the train run whose test failed"))
    if result.raw:
        tries.append((f"mltrace impact {result.raw[0]}", "everything the old extract fed"))
    tries += [("mltrace history train", "one component's runs"),
              ("mltrace components --tag demo", "owners, tags, run counts"),
              ("mltrace ui", "the same in a browser")]
    console.print("\n[bold]Try next:[/bold]")
    width = max(len(c) for c, _ in tries) + len(store)
    for cmd, why in tries:
        full = cmd.replace("mltrace", f"mltrace{store}", 1)
        pad = " " * (width - len(full))
        if soft or 2 + width + 2 + len(why) <= console.width:
            console.print(f"  [cyan]{escape(full)}[/cyan]{pad}  [dim]{why}[/dim]", soft_wrap=soft)
        else:  # a narrow terminal: the phrase on a line of its own, not broken under the command
            console.print(f"  [cyan]{escape(full)}[/cyan]\n      [dim]{why}[/dim]")
