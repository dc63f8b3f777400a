"""Every code example of the mltrace 0.16 docs' Concepts and Logging sections, with only the
import changed (``mltrace`` → ``mltrace_otel``) and the docs' typos fixed (``self;`` →
``self,``, ``self.`` → ``self,``, ``0.05.`` → ``0.05,``, ``⇔CSV`` → ``.csv``; ``...`` bodies
filled with a small DataFrame the test builds)."""

# ruff: noqa: B006, E501, F841 - the docs' code, kept as written
from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from sdk_helpers import attr, events_of, runs

from mltrace_otel import Test
from mltrace_otel import conventions as C

# --- 3.3 Concepts / 3.4.3 Testing: the OutliersTest ------------------------------------------


class OutliersTest(Test):
    def __init__(self):
        super().__init__(name="outliers")

    def testComputeStats(self, df: pd.DataFrame):
        # Get numerical columns
        num_df = df.select_dtypes(include=["number"])
        # Compute stats
        stats = num_df.describe()
        print("Dataframe statistics:")
        print(stats)

    def testZScore(
        self,
        df: pd.DataFrame,
        stdev_cutoff: float = 5.0,
        threshold: float = 0.05,
    ):
        """
        Checks to make sure there are no outliers using z score cutoff.
        """
        # Get numerical columns
        num_df = df.select_dtypes(include=["number"])
        z_scores = (
            (num_df - num_df.mean(axis=0, skipna=True))
            / num_df.std(axis=0, skipna=True)
        ).abs()
        if (z_scores > stdev_cutoff).to_numpy().sum() > threshold * len(df):
            print(
                f"Number of outliers: {(z_scores > stdev_cutoff).to_numpy().sum()}"
            )
            print(f"Outlier threshold: {threshold * len(df)}")
            raise Exception("There are outlier values!")


def taxi_df(outliers: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    df = pd.DataFrame({"fare": rng.normal(10, 1, 100), "tip": rng.normal(2, 0.5, 100),
                       "vendor": ["a", "b"] * 50})
    if outliers:  # 3% extreme values in two columns: z ≈ 5.7 > 5, 6 outliers > 0.05 * 100
        df.loc[:2, "fare"] = 10_000.0
        df.loc[97:, "tip"] = 5_000.0
    return df


def test_concepts_test_class_with_typo_fixed(spans):
    from mltrace_otel import Test

    class ConceptsOutliersTest(Test):
        def __init__(self):
            super().__init__(name='outliers')

        def testSomething(self, df: pd.DataFrame):
            assert len(df) > 0

        def testSomethingElse(self, df: pd.DataFrame):
            assert "fare" in df

    t = ConceptsOutliersTest()
    assert t.name == "outliers"
    assert [m.__name__ for m in t.getTestMethods()] == ["testSomething", "testSomethingElse"]
    assert t.runTests(df=taxi_df()) == {"testSomething": "success", "testSomethingElse": "success"}


def test_concepts_featuregen_component(spans):
    from mltrace_otel import Component

    class Featuregen(Component):
        def __init__(self, beforeTests=[], afterTests=[OutliersTest]):
            super().__init__(
                name="featuregen",
                owner="spark-gymnast",
                description="Generates features for high tip prediction problem",
                tags=["nyc-taxicab"],
                beforeTests=beforeTests,
                afterTests=afterTests,
            )

    @Featuregen().run
    def generateFeatures(df: pd.DataFrame):
        # Generate features
        df = df.assign(high_tip=df["tip"] > 0.2 * df["fare"])
        return df

    out = generateFeatures(taxi_df())
    assert "high_tip" in out
    (run,) = runs(spans)
    assert run.name == "featuregen"
    assert attr(run, C.COMPONENT_OWNER) == "spark-gymnast"
    assert attr(run, C.COMPONENT_DESCRIPTION) == "Generates features for high tip prediction problem"
    assert attr(run, C.COMPONENT_TAGS) == ["nyc-taxicab"]
    # the after tests ran on the function's local df and passed
    assert [(e[C.TEST_NAME], e[C.TEST_METHOD], e[C.TEST_PHASE], e[C.TEST_PASSED]) for e in events_of(run)] == [
        ("outliers", "testComputeStats", "after", True), ("outliers", "testZScore", "after", True)]
    assert "def generateFeatures" in attr(run, C.CODE_SNAPSHOT)

    c = Featuregen()
    with pytest.raises(AttributeError):
        c.name = "other"  # read-only, as in mltrace


def test_logging_component_subclass(spans):
    from mltrace_otel import Component

    class Cleaning(Component):
        def __init__(self, name, owner, tags=[], beforeTests=[], afterTests=[]):
            super().__init__(
                name="cleaning_" + name,
                owner=owner,
                description="Basic component to clean raw data",
                tags=tags,
                beforeTests=beforeTests,
                afterTests=afterTests,
                )

    c = Cleaning("taxi", "plumber", tags=["etl"])
    assert (c.name, c.owner, c.description, c.tags) == (
        "cleaning_taxi", "plumber", "Basic component to clean raw data", ["etl"])

    @c.run(inputs=["raw.csv"], outputs=["clean.csv"])
    def clean(path):
        return path.replace("raw", "clean")

    assert clean("raw.csv") == "clean.csv"
    (run,) = runs(spans)
    assert run.name == "cleaning_taxi"
    assert attr(run, C.RUN_INPUTS) == ["raw.csv"] and attr(run, C.RUN_OUTPUTS) == ["clean.csv"]
    assert attr(run, C.RUN_INPUT_TYPES) == ["DATA"]


def test_logging_decorator_approach_auto_log(spans, sdk_settings):
    from mltrace_otel import Component
    c = Component(
        name="cleaning",
        owner="plumber",
        description="Cleans raw NYC taxicab data",
    )

    @c.run(auto_log=True)
    def clean_data(df: pd.DataFrame) -> str:
        # Do some cleaning
        clean_df = df.dropna()
        return clean_df

    raw = taxi_df()
    raw.loc[5, "tip"] = np.nan
    result = clean_data(raw)
    assert len(result) == 99
    (run,) = runs(spans)
    # the DataFrames were saved under SAVE_DIR (here MLTRACE_DIR) and logged as pointers
    (inp,) = attr(run, C.RUN_INPUTS)
    (out,) = attr(run, C.RUN_OUTPUTS)
    assert Path(inp).parent == sdk_settings.artifact_dir / "values"  # content-addressed (issue 20)
    pd.testing.assert_frame_equal(joblib.load(inp), raw)
    pd.testing.assert_frame_equal(joblib.load(out), result)
    assert all(attr(run, C.RUN_INPUT_VERSIONS)) and all(attr(run, C.RUN_OUTPUT_VERSIONS))

    # a second run over the cleaned output links to the first, through the auto-logged pointer
    @c.run(auto_log=True)
    def summarize(clean_df: pd.DataFrame):
        summary_data = clean_df.describe()
        return summary_data

    summarize(result)
    second = runs(spans)[1]
    assert attr(second, C.RUN_INPUTS) == [out]
    assert [(lk.context.span_id, lk.attributes[C.LINK_IO_NAME]) for lk in second.links] == [
        (run.context.span_id, out)]


def test_logging_python_approach(spans, tmp_path):
    from datetime import datetime

    from mltrace_otel import ComponentRun, get_git_hash, log_component_run

    def clean_data(filename: str) -> str:
        # Create ComponentRun object
        cr = ComponentRun("cleaning")
        cr.set_start_timestamp()
        cr.add_input(filename)
        cr.git_hash = get_git_hash()  # Sets git hash, not source code snapshot!
        df = pd.read_csv(filename)
        # Do some cleaning
        df = df.dropna()
        # Save cleaned dataframe
        clean_version = filename[:-4] + f'_clean_{datetime.utcnow().strftime("%m%d%Y%H%M%S")}.csv'
        df.to_csv(clean_version)
        # Finish logging
        cr.set_end_timestamp()
        cr.add_output(clean_version)
        log_component_run(cr)
        return clean_version

    raw = tmp_path / "raw.csv"
    taxi_df().to_csv(raw, index=False)
    clean_version = clean_data(str(raw))
    (run,) = runs(spans)
    assert run.name == "cleaning"
    assert attr(run, C.RUN_INPUTS) == [str(raw)]
    assert attr(run, C.RUN_OUTPUTS) == [clean_version]
    assert attr(run, C.RUN_INPUT_TYPES) == ["DATA"] and attr(run, C.RUN_OUTPUT_TYPES) == ["DATA"]
    assert C.CODE_SNAPSHOT not in run.attributes  # the docs: git hash only, no snapshot


def test_logging_set_upstream(spans):
    from mltrace_otel import ComponentRun, log_component_run

    cr = ComponentRun("training")
    cr.set_start_timestamp()
    cr.set_upstream("cleaning")
    cr.set_upstream(["featuregen", "cleaning"])
    cr.set_end_timestamp()
    log_component_run(cr, set_dependencies_from_inputs=False)
    (run,) = runs(spans)
    assert attr(run, C.RUN_UPSTREAM) == ["cleaning", "featuregen"]


def test_testing_before_tests_pass_and_fail(spans):
    from mltrace_otel import Component
    c = Component(
        name="cleaning",
        owner="plumber",
        description="Cleans raw NYC taxicab data",
        beforeTests=[OutliersTest],
    )

    @c.run(auto_log=True)
    def clean_data(df: pd.DataFrame) -> str:
        # Do some cleaning
        clean_df = df.dropna()
        return clean_df

    clean_data(taxi_df())
    with pytest.raises(Exception, match="There are outlier values!"):
        clean_data(taxi_df(outliers=True))

    ok, bad = runs(spans)
    assert [(e[C.TEST_METHOD], e[C.TEST_PHASE], e[C.TEST_PASSED]) for e in events_of(ok)] == [
        ("testComputeStats", "before", True), ("testZScore", "before", True)]
    assert ok.status.is_ok
    assert [(e[C.TEST_METHOD], e[C.TEST_PASSED], e[C.TEST_MESSAGE]) for e in events_of(bad)] == [
        ("testComputeStats", True, ""), ("testZScore", False, "Exception: There are outlier values!")]
    assert not bad.status.is_ok
    assert "outliers.testZScore" in bad.status.description
    assert attr(bad, C.RUN_OUTPUTS) == []  # the function never ran
