"""A small NYC-taxi-style pipeline instrumented with mltrace-otel (mltrace's API, one import).

Run it, then look at it with the CLI or the UI:

    python examples/taxi_pipeline.py
    mltrace recent
    mltrace trace predictions.csv

With no collector configured the runs go to the local spool under MLTRACE_DIR (default
~/.mltrace), which the CLI and UI drain into the embedded store when they open it. Set
OTEL_EXPORTER_OTLP_ENDPOINT to send them to a collector instead.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

import mltrace_otel as mltrace


class OutliersTest(mltrace.Test):
    """No more than 5% of the numeric cells more than 5 standard deviations out."""

    def __init__(self):
        super().__init__(name="outliers")

    def testZScore(self, df: pd.DataFrame, stdev_cutoff: float = 5.0, threshold: float = 0.05):
        num_df = df.select_dtypes(include=["number"])
        z_scores = ((num_df - num_df.mean()) / num_df.std()).abs()
        if (z_scores > stdev_cutoff).to_numpy().sum() > threshold * len(df):
            raise Exception("There are outlier values!")


class NoNullsTest(mltrace.Test):
    def testNoNulls(self, clean_df: pd.DataFrame):
        if clean_df.isna().any().any():
            raise ValueError("clean data still has nulls")


cleaning = mltrace.Component("cleaning", owner="plumber", description="Drops bad taxi rows",
                             tags=["etl"], beforeTests=[OutliersTest], afterTests=[NoNullsTest])
featuregen = mltrace.Component("featuregen", owner="spark-gymnast", description="Builds features",
                               tags=["etl"])
training = mltrace.Component("training", owner="modeler", description="Fits a tip model", tags=["ml"])
inference = mltrace.Component("inference", owner="modeler", description="Scores trips", tags=["ml"])


@cleaning.run(input_vars=["raw_path"], output_vars=["clean_path"])
def clean(df: pd.DataFrame, raw_path: str, workdir: Path) -> str:
    clean_df = df.dropna()
    clean_path = str(workdir / "clean.csv")
    clean_df.to_csv(clean_path, index=False)
    return clean_path


@featuregen.run(input_vars=["clean_path"], output_kwargs={"features_path": "features"})
def make_features(clean_path: str, workdir: Path) -> str:
    df = pd.read_csv(clean_path)
    features = df.assign(tip_frac=df["tip"] / df["fare"])
    features_path = str(workdir / "features.pq")
    features.to_csv(features_path, index=False)
    return features_path


@training.run(input_vars=["features_path"])
def train(features_path: str) -> str:
    df = pd.read_csv(features_path)
    coef = float(np.polyfit(df["fare"], df["tip"], 1)[0])
    return mltrace.save({"coef": coef})  # recorded as the run's output


@inference.run(inputs=["trips-today"], outputs=["predictions.csv"], endpoint=True)
def predict(model_path: str, trips: pd.DataFrame) -> pd.Series:
    model = mltrace.load(model_path)  # recorded as the run's input
    return trips["fare"] * model["coef"]


def main() -> None:
    rng = np.random.default_rng(0)
    raw = pd.DataFrame({"fare": rng.gamma(3, 5, 500), "tip": rng.gamma(1, 2, 500)})
    raw.loc[::50, "tip"] = np.nan
    with tempfile.TemporaryDirectory() as d:
        workdir = Path(d)
        raw_path = str(workdir / "raw.csv")
        raw.to_csv(raw_path, index=False)
        clean_path = clean(raw, raw_path, workdir)
        features_path = make_features(clean_path, workdir)
        model_path = train(features_path)
        preds = predict(model_path, raw.head(10))
    ok = mltrace.flush()
    stats = mltrace.delivery_stats()
    print(f"predicted {len(preds)} trips; runs delivered: {stats.delivered} ({stats.destination}), "
          f"dropped: {stats.dropped}, flushed: {ok}")


if __name__ == "__main__":
    main()
