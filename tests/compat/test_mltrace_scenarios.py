"""mltrace's public examples as a standing check (issue 20): the scenarios of mltrace's tutorial
(loglabs/mltrace-demo), its ``stale`` example and the DVC example, written afresh here in the
same shape, run as their users run them (separate processes, only the import changed), and read
back through the real embedded store."""

# ruff: noqa: F841 - the decorated functions' locals are read by the SDK

from __future__ import annotations

import json
import shutil
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import mltrace_otel as mltrace
from mltrace_otel.sdk import export

SCRIPTS = Path(__file__).parent / "scripts"

pytest.importorskip("sklearn")


def _model_pointer(run):  # noqa: ANN001, ANN202
    (p,) = [p for p in run.outputs if p.type == "MODEL"]
    return p


@pytest.mark.slow
def test_tutorial_training_then_inference_processes_link_by_version(tmp_path, tmp_settings, store,
                                                                   run_script):
    work = tmp_path / "work"
    work.mkdir()
    script = SCRIPTS / "taxi_tips.py"
    run_script(script, "training", "0", cwd=work)
    trained_at = time.monotonic()
    time.sleep(max(0.0, 2.0 - (time.monotonic() - trained_at)))  # inference 2 s after training
    for week in (1, 2, 3):  # the weekly loop: one process per week, the model a default argument
        run_script(script, "inference", str(week), cwd=work, env={"INFERENCE_THRESHOLD_S": "1"})
    assert store.drain_spool() >= 1

    (train,) = store.history("training", limit=5)
    (split,) = store.history("splitting", limit=5)
    inferences = store.history("inference", limit=10)
    assert len(inferences) == 3
    model = _model_pointer(train)
    assert "randomforestclassifier" in model.name and model.version
    for inf in inferences:  # the same pointer and version in the process that loaded the model
        assert (model.name, model.version) in {(p.name, p.version) for p in inf.inputs}
        assert train.id in store.get_run(inf.id).dependencies

    # trace of a prediction reaches training and splitting in the other process
    predictions = [inf.outputs[0].name for inf in inferences]
    lineage = store.trace(predictions[0])
    reached = {n.run.id for n in lineage.nodes}
    assert {train.id, split.id} <= reached
    assert {n.run.component for n in lineage.nodes} == {"inference", "featuregen", "cleaning",
                                                        "training", "splitting"}

    # review of the flagged predictions ranks training and splitting at full coverage
    for p in predictions:
        store.flag(p)
    review = store.review()
    by_id = {e.run.id: e for e in review.entries}
    assert by_id[train.id].count == by_id[split.id].count == 3
    assert by_id[train.id].coverage == by_id[split.id].coverage == 1.0
    assert review.unproduced == ()

    # a 1 s threshold, 2 s after training: stale, naming the training run
    for inf in inferences:
        reasons = store.get_run(inf.id).stale_reasons
        assert any(r.kind == "old_input" and r.run == train.id and r.component == "training"
                   for r in reasons), reasons

    # the model was saved once, not once per inference process
    models = list((tmp_settings.artifact_dir / "values").glob("randomforestclassifier-*.mlt"))
    assert [m.name for m in models] == [Path(model.name).name]


def test_stale_example_fails_loudly_then_runs_as_mltrace_documents(tmp_settings, store):
    export.configure(settings=tmp_settings)
    training_component = mltrace.Component("training", "Example of training a model.", "data_scientist")
    inference_component = mltrace.Component("inference", "Example of doing inference.", "ml_engineer")

    # the example as published uses keywords mltrace never had: refused, naming them
    with pytest.raises(TypeError, match="'input_filenames'.*'output_filenames'"):
        training_component.run(component_name="training", input_filenames=["version"],
                               output_filenames=["model_file"])

    @training_component.run(input_vars=["version"], output_vars=["model_file"])
    def training(version: str) -> str:
        model_file = "model_" + version
        return model_file

    @inference_component.run(input_vars=["model_files"], output_vars=["identifier"])
    def inference(model_files: list) -> str:
        identifier = "id_" + "".join(sorted(model_files))
        return identifier

    first_model_file = training("0")
    now = datetime.now(timezone.utc)
    cr = mltrace.ComponentRun("some_old_component", start_timestamp=now - timedelta(days=61),
                              end_timestamp=now - timedelta(days=61))
    cr.add_input("1")
    cr.add_output("model_1")
    old_id = mltrace.log_component_run(cr)
    training("2")
    identifier = inference([first_model_file, "model_1"])
    assert mltrace.flush() and store.drain_spool() >= 1

    first, _second = sorted(store.history("training", limit=5), key=lambda r: r.start)
    (inf,) = store.history("inference", limit=5)
    assert [p.name for p in inf.inputs] == ["model_0", "model_1"]
    assert [p.name for p in inf.outputs] == [identifier]
    stale = store.get_run(inf.id).stale
    assert f"some_old_component (ID {old_id}) was run 61 days ago." in stale
    assert f"training (ID {first.id}) has 1 fresher run that began before this component run started." \
        in stale, stale
    assert any(r.id == inf.id for r in store.stale_runs())


_CLEAN = '''
import pandas as pd
import mltrace_otel as mltrace

c = mltrace.Component(name="cleaning", description="adds column names", owner="jeanne", tags=["etl"])


@c.run(input_vars=["input_filepath"], output_vars=["output_filepath"])
def clean(input_filepath: str, output_filepath: str) -> None:
    raw = pd.read_csv(input_filepath, header=None)
    raw.columns = ["sex", "length", "diameter", "height", "whole_weight", "shucked_weight",
                   "viscera_weight", "shell_weight", "rings"]
    # QUANTILES
    raw.to_csv(output_filepath, index=False)


if __name__ == "__main__":
    clean("data/abalone.data", "data/abalone.csv")
'''

_QUANTILES = ('raw["rings_quantile"] = pd.qcut(raw["rings"], q=3, precision=0, '
              'labels=["young", "middle_aged", "old"])')

_SUMMARY = '''
import pandas as pd
import mltrace_otel as mltrace

c = mltrace.Component(name="summary", description="simple stats", owner="jeanne", tags=["eda"])


@c.run(input_vars=["input_filepath"], output_vars=["output_filepath"])
def summary(input_filepath: str, output_filepath: str) -> None:
    pd.read_csv(input_filepath).describe().to_csv(output_filepath, index=False)


if __name__ == "__main__":
    summary("data/abalone.csv", "data/summary_stats.csv")
'''


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                   env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
                        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com",
                        "HOME": str(repo), "PATH": "/usr/bin:/bin:/usr/local/bin"})


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_dvc_example_runs_carry_the_git_tags_of_each_pipeline_version(tmp_path, tmp_settings, store,
                                                                       run_script):
    repo = tmp_path / "dvc-mltrace"
    (repo / "data").mkdir(parents=True)
    rows = [f"{'MFI'[i % 3]},0.{40 + i},0.{30 + i},0.1{i % 10},0.5,0.2,0.1,0.15,{5 + i % 12}"
            for i in range(30)]
    (repo / "data" / "abalone.data").write_text("\n".join(rows) + "\n")
    (repo / "01_clean_data.py").write_text(_CLEAN)
    (repo / "02_summary_stats.py").write_text(_SUMMARY)
    _git(repo, "init", "-q")
    _git(repo, "add", "01_clean_data.py", "02_summary_stats.py")
    _git(repo, "commit", "-q", "-m", "first version of the pipeline")
    _git(repo, "tag", "-a", "orig-features", "-m", "original features only")
    for script in ("01_clean_data.py", "02_summary_stats.py"):
        run_script(repo / script, cwd=repo)

    (repo / "01_clean_data.py").write_text(_CLEAN.replace("# QUANTILES", _QUANTILES))
    _git(repo, "commit", "-q", "-am", "rings quantiles")
    _git(repo, "tag", "-a", "rings_quantile", "-m", "added quantiles of rings as a feature")
    for script in ("01_clean_data.py", "02_summary_stats.py"):
        run_script(repo / script, cwd=repo)
    assert store.drain_spool() >= 1

    new_clean, old_clean = store.history("cleaning", limit=5)
    assert old_clean.git_tags == ("orig-features",) and new_clean.git_tags == ("rings_quantile",)
    assert old_clean.git_hash != new_clean.git_hash and len(new_clean.git_hash) == 40
    new_summary, old_summary = store.history("summary", limit=5)
    # each summary read the version of data/abalone.csv its own pipeline version wrote
    assert old_summary.inputs[0].version == old_clean.outputs[0].version
    assert new_summary.inputs[0].version == new_clean.outputs[0].version != old_clean.outputs[0].version
    lineage = store.trace("data/summary_stats.csv")
    assert {n.run.id for n in lineage.nodes} == {new_summary.id, new_clean.id}

    # the CLI shows runs with git tags (mltrace 0.17's CLI crashed on them)
    from typer.testing import CliRunner

    from mltrace_otel.cli.app import app

    env = {"MLTRACE_DIR": str(tmp_settings.mltrace_dir), "MLTRACE_CLICKHOUSE_URL": None,
           "MLTRACE_EXPORT": None, "OTEL_EXPORTER_OTLP_ENDPOINT": None, "NO_COLOR": "1",
           "COLUMNS": "200"}
    store_url = tmp_settings.resolved_store_url
    result = CliRunner().invoke(app, ["--store", store_url, "history", "cleaning", "--json"], env=env)
    assert result.exit_code == 0, result.output
    assert [r["git_tags"] for r in json.loads(result.stdout)] == [["rings_quantile"], ["orig-features"]]
    result = CliRunner().invoke(app, ["--store", store_url, "inspect", old_clean.id[:8]], env=env)
    assert result.exit_code == 0 and "orig-features" in result.stdout, result.output
