"""``python -m mltrace_otel.collector [server]``: run the collector (or the server) from settings.

For environments without the CLI (containers, tests); flags are the ``MLTRACE_*`` variables.
"""

from __future__ import annotations

import sys

from mltrace_otel.collector.server import run_collector, run_server
from mltrace_otel.errors import MltraceError
from mltrace_otel.settings import Settings


def main(argv: list[str]) -> int:
    """Run ``run_server`` when the first argument is ``server``, else ``run_collector``."""
    try:
        settings = Settings.from_env()
        if argv[:1] == ["server"]:
            return run_server(settings)
        return run_collector(settings)
    except MltraceError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
