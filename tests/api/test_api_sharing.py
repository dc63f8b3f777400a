"""A script that queries through the mltrace API holds the embedded store for its whole life;
other processes (the CLI here) must still get answers, not a lock wait: the script announces a
query API in MLTRACE_DIR/store.json and the CLI asks it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

HOLDER = textwrap.dedent("""
    import sys, time
    import mltrace_otel as mltrace

    c = mltrace.Component("notebook_step", owner="ann")

    @c.run(inputs=["nb_in.csv"], outputs=["nb_out.csv"])
    def step():
        return 1

    step()
    ids = mltrace.get_recent_run_ids(limit=5)
    print("READY", ids[0], flush=True)
    sys.stdin.readline()          # hold the store until the test is done
    print("recent after", len(mltrace.get_recent_run_ids(limit=5)), flush=True)
""")


def test_cli_reaches_a_store_held_by_an_api_user(tmp_path: Path) -> None:
    env = {**os.environ, "MLTRACE_DIR": str(tmp_path / "mltrace"), "MLTRACE_STORE_WAIT_S": "3",
           "MLTRACE_EXPORT": "spool", "COLUMNS": "200"}
    env.pop("MLTRACE_CLICKHOUSE_URL", None)
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER], env=env, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = holder.stdout.readline()
        assert line.startswith("READY"), line + holder.stderr.read()
        run_id = line.split()[1]

        announced = json.loads((tmp_path / "mltrace" / "store.json").read_text())
        assert announced["pid"] == holder.pid and announced["url"].startswith("http://127.0.0.1:")
        assert (tmp_path / "mltrace" / "store.json").stat().st_mode & 0o777 == 0o600

        t = time.monotonic()
        cli = subprocess.run([sys.executable, "-m", "mltrace_otel.cli.app", "recent", "--json"],
                             env=env, capture_output=True, text=True, timeout=120)
        assert cli.returncode == 0, cli.stderr
        ids = [r["id"] for r in json.loads(cli.stdout)]
        assert run_id in ids
        # The CLI went through the holder's API instead of waiting out MLTRACE_STORE_WAIT_S
        # and failing: it answered although the lock was held the whole time.
        assert holder.poll() is None and time.monotonic() - t < 30
        # a command that needs the store itself says at once who holds it
        clear = subprocess.run([sys.executable, "-m", "mltrace_otel.cli.app", "clear", "--yes"],
                               env=env, capture_output=True, text=True, timeout=120)
        assert clear.returncode == 1 and f"held by another process (pid {holder.pid})" in clear.stderr
        assert "Traceback" not in clear.stderr

        out, err = holder.communicate("\n", timeout=60)
        assert holder.returncode == 0, err
        assert "recent after 1" in out
    finally:
        if holder.poll() is None:
            holder.kill()
    assert not (tmp_path / "mltrace" / "store.json").exists()  # withdrawn at exit
    # the same question with nobody holding the store: the CLI opens it and reads it directly
    direct = subprocess.run([sys.executable, "-m", "mltrace_otel.cli.app", "recent", "--json"],
                            env=env, capture_output=True, text=True, timeout=120)
    assert direct.returncode == 0, direct.stderr
    assert json.loads(direct.stdout) == json.loads(cli.stdout)
