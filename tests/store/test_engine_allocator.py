"""The collector's processes give the embedded engine's allocator longer-lived free pages
(store/connect.tune_engine_allocator): chDB's jemalloc must read the variable we set, and our
options must be ones it accepts. Each case runs in a fresh interpreter, since jemalloc reads
its options once, when chDB loads."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from mltrace_otel.store.connect import ENGINE_MALLOC_CONF

_LOAD = "import chdb; assert str(chdb.query('SELECT 40 + 2')).strip() == '42'"


def _python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k != "JE_MALLOC_CONF"}
    return subprocess.run([sys.executable, "-c", code], env={**base, **env}, capture_output=True,
                          text=True, timeout=120)


def test_chdb_reads_je_malloc_conf_and_accepts_our_options() -> None:
    # abort_conf makes jemalloc abort on an option it does not know: it read the variable
    bad = _python(_LOAD, {"JE_MALLOC_CONF": "abort_conf:true,no_such_option:1"})
    assert bad.returncode == -signal.SIGABRT
    ours = _python(_LOAD, {"JE_MALLOC_CONF": "abort_conf:true," + ENGINE_MALLOC_CONF})
    assert ours.returncode == 0, ours.stderr


def test_the_collector_process_sets_it_before_the_engine_loads_and_keeps_a_users_value() -> None:
    code = ("import os; from mltrace_otel.store.connect import tune_engine_allocator as t; "
            f"first = t(); {_LOAD}; print(first, t(), os.environ['JE_MALLOC_CONF'])")
    r = _python(code, {})
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True", "False", ENGINE_MALLOC_CONF]  # False: chDB already loaded
    r = _python(code, {"JE_MALLOC_CONF": "dirty_decay_ms:1000"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["False", "False", "dirty_decay_ms:1000"]
