"""``python -m mltrace_otel.collector``: run the collector from settings.

For environments without the CLI (containers, tests); flags are the ``MLTRACE_*`` variables. An
entry point, not part of the package's layers: the collector process is composed in
:mod:`mltrace_otel.server` (with the query API it announces), as ``mltrace server`` is.
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    """Run :func:`mltrace_otel.server.run_collector` (``server`` as the first argument: see
    ``python -m mltrace_otel.server``)."""
    if argv[:1] == ["server"]:
        print("error: the server is `python -m mltrace_otel.server` (or `mltrace server`)", file=sys.stderr)
        return 2
    from mltrace_otel import server

    return server.main(["collector"])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
