"""``mltrace ui`` end to end: a real process serves the app on its own embedded store, asks for
the token when one is set, and exits 0 on Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path


def _get(url: str, token: str | None = None) -> int:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_mltrace_ui_serves_and_stops_cleanly(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLTRACE_", "OTEL_"))}
    env.update(MLTRACE_DIR=str(tmp_path / "home"), MLTRACE_TOKEN="t0ken", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "mltrace_otel.cli.app", "ui", "--port", "0"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = None
        deadline = time.monotonic() + 60
        lines = []
        while time.monotonic() < deadline and url is None:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            m = re.search(r"http://127\.0\.0\.1:\d+/", line)
            url = m.group(0) if m else None
        assert url, "".join(lines)
        assert _get(url + "recent") == 401
        assert _get(url + "recent", "t0ken") == 200
        assert _get(url + "_dash-layout", "t0ken") == 200
        assert (tmp_path / "home" / "store").is_dir()  # its own embedded store under MLTRACE_DIR
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
