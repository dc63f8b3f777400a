"""A tip-prediction pipeline in the shape of mltrace's tutorial (loglabs/mltrace-demo): one
process trains (cleaning → featuregen → splitting → training, which dumps the model with
joblib), other processes run weekly inference with that model loaded as a default argument.
Every component uses ``auto_log=True`` and declares no inputs or outputs.

    python taxi_tips.py training 0
    python taxi_tips.py inference WEEK      # INFERENCE_THRESHOLD_S: the inference staleness threshold

Synthetic trips, deterministic per week. Only the import line is mltrace-specific.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pandas as pd
from joblib import dump, load
from sklearn.ensemble import RandomForestClassifier

import mltrace_otel as mltrace

THRESHOLD_S = int(os.environ.get("INFERENCE_THRESHOLD_S", "2592000"))
FEATURES = ["hour", "weekday", "trip_time", "trip_distance", "passengers"]
LABEL = "high_tip"


def load_trips(week: int) -> pd.DataFrame:
    rng = np.random.default_rng(week)
    n = 400
    start = pd.Timestamp("2020-01-01") + pd.Timedelta(weeks=week)
    pickup = start + pd.to_timedelta(rng.integers(0, 7 * 24 * 3600, n), unit="s")
    fare = rng.uniform(2, 60, n).round(2)
    return pd.DataFrame({
        "pickup": pickup,
        "dropoff": pickup + pd.to_timedelta(rng.integers(60, 3600, n), unit="s"),
        "fare_amount": fare,
        "tip_amount": (fare * rng.uniform(0, 0.3, n)).round(2),
        "trip_distance": rng.uniform(0.1, 20, n).round(1),
        "passengers": rng.integers(1, 5, n),
    })


class Cleaning(mltrace.Component):
    def __init__(self) -> None:
        super().__init__(name="cleaning", owner="plumber", tags=["taxi"])


class Featuregen(mltrace.Component):
    def __init__(self) -> None:
        super().__init__(name="featuregen", owner="gymnast", tags=["taxi"])


class Splitting(mltrace.Component):
    def __init__(self) -> None:
        super().__init__(name="splitting", owner="fission", tags=["taxi"])


class Training(mltrace.Component):
    def __init__(self) -> None:
        super().__init__(name="training", owner="trainer", tags=["taxi"])


class Inference(mltrace.Component):
    def __init__(self) -> None:
        super().__init__(name="inference", owner="holmes", tags=["taxi"])


@Cleaning().run(auto_log=True)
def clean_data(df: pd.DataFrame) -> pd.DataFrame:
    df = df[df.fare_amount > 5]
    clean_df = df.reset_index(drop=True)
    return clean_df


@Featuregen().run(auto_log=True)
def featurize_data(df: pd.DataFrame, tip_fraction: float = 0.1) -> pd.DataFrame:
    features_df = pd.DataFrame({
        "pickup": df.pickup,
        "hour": df.pickup.dt.hour,
        "weekday": df.pickup.dt.day_of_week,
        "trip_time": (df.dropoff - df.pickup).dt.seconds,
        "trip_distance": df.trip_distance,
        "passengers": df.passengers,
        LABEL: df.tip_amount / df.fare_amount > tip_fraction,
    })
    return features_df


@Splitting().run(auto_log=True)
def train_test_split(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    df = df.sort_values(by="pickup")
    cut = int(len(df) * 0.8)
    train_df, test_df = df.iloc[:cut], df.iloc[cut:]
    return train_df, test_df


@Training().run(auto_log=True)
def train_model(train_df: pd.DataFrame, test_df: pd.DataFrame, feature_columns: list, label_column: str):
    model = RandomForestClassifier(n_estimators=10, max_depth=4, random_state=42)
    model.fit(train_df[feature_columns].values, train_df[label_column].values)
    accuracy = float(model.score(test_df[feature_columns].values, test_df[label_column].values))
    print(f"test accuracy {accuracy:.2f}")
    dump(model, "model.joblib")


@Inference().run(auto_log=True, staleness_threshold=THRESHOLD_S)
def inference(features_df: pd.DataFrame, feature_columns: list,
              model=load("model.joblib") if os.path.exists("model.joblib") else None):
    if not model:
        raise ValueError("Please run this pipeline in training mode first!")
    predictions = model.predict_proba(features_df[feature_columns].values)[:, 1]
    predictions_df = features_df  # the tutorial adds the predictions to its input frame
    predictions_df["prediction"] = predictions
    return predictions_df


if __name__ == "__main__":
    mode, week = sys.argv[1], int(sys.argv[2])
    features_df = featurize_data(clean_data(load_trips(week)))
    if mode == "training":
        train_df, test_df = train_test_split(features_df)
        train_model(train_df, test_df, FEATURES, LABEL)
    else:
        inference(features_df, FEATURES)
