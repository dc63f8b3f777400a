"""A script that queries through the mltrace API holds the embedded store for its whole life;
other processes (the CLI here) must still get answers, not a lock wait."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
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

        cli = subprocess.run([sys.executable, "-m", "mltrace_otel.cli.app", "recent", "--json"],
                             env=env, capture_output=True, text=True, timeout=120)
        assert cli.returncode == 0, cli.stderr
        ids = [r["id"] for r in json.loads(cli.stdout)]
        assert run_id in ids
        # The CLI went through the holder's endpoint instead of waiting out MLTRACE_STORE_WAIT_S
        # and failing: it answered although the lock was held the whole time.
        assert holder.poll() is None

        out, err = holder.communicate("\n", timeout=60)
        assert holder.returncode == 0, err
        assert "recent after 1" in out
    finally:
        if holder.poll() is None:
            holder.kill()
