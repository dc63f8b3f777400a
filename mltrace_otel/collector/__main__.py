"""``python -m mltrace_otel.collector``: run the collector from settings.

For environments without the CLI (containers, tests); flags are the ``MLTRACE_*`` variables. The
server (collector + UI) is ``python -m mltrace_otel.server``.
"""

from __future__ import annotations

import sys

from mltrace_otel.collector.server import run_collector
from mltrace_otel.errors import MltraceError
from mltrace_otel.settings import Settings


def main(argv: list[str]) -> int:
    """Run ``run_collector`` (``server`` as the first argument: see ``python -m mltrace_otel.server``)."""
    if argv[:1] == ["server"]:
        print("error: the server is `python -m mltrace_otel.server` (or `mltrace server`)", file=sys.stderr)
        return 2
    try:
        return run_collector(Settings.from_env())
    except MltraceError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
