"""examples/ run as tests: the example pipeline, run as a user would, logs the documented runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sdk_helpers import spooled_spans

from mltrace_otel import conventions as C

REPO = Path(__file__).resolve().parents[2]


def test_taxi_pipeline_example_logs_a_linked_pipeline(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MLTRACE_", "SAVE_DIR"))}
    env.update(MLTRACE_DIR=str(tmp_path), PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, str(REPO / "examples" / "taxi_pipeline.py")], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "runs delivered: 4" in out.stdout and "dropped: 0" in out.stdout
    runs = {s["name"]: (sid, s) for sid, s in spooled_spans(tmp_path / "spool").items()}
    assert sorted(runs) == ["cleaning", "featuregen", "inference", "training"]
    a = {name: s["attrs"] for name, (_, s) in runs.items()}
    assert a["cleaning"][C.RUN_OUTPUTS] == a["featuregen"][C.RUN_INPUTS]
    assert a["featuregen"][C.RUN_OUTPUTS] == a["training"][C.RUN_INPUTS]
    (model,) = a["training"][C.RUN_OUTPUTS]
    assert Path(model).parent == tmp_path / "training" and Path(model).exists()
    assert a["inference"][C.RUN_INPUTS] == ["trips-today", model]
    assert a["inference"][C.RUN_OUTPUT_TYPES] == ["ENDPOINT"]
    assert a["training"][C.RUN_OUTPUT_VERSIONS] == [a["inference"][C.RUN_INPUT_VERSIONS][1]] != [""]
    # each step links to the one that produced its input, in the same process
    chain = (("featuregen", "cleaning"), ("training", "featuregen"), ("inference", "training"))
    for consumer, producer in chain:
        assert [lk[0] for lk in runs[consumer][1]["links"]] == [runs[producer][0]]
    assert a["cleaning"][C.COMPONENT_TAGS] == ["etl"]
