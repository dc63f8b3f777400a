"""The ``mltrace`` command-line interface (typer): :mod:`.app` holds the commands,
:mod:`.render` the human output, :mod:`.demo` the demo pipeline.

May import: mltrace_otel.settings, .errors, .store, .sdk (the demo only), .collector and
.dashboards (the service commands), inside the commands that need them.
"""
