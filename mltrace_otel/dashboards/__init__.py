"""The triage UI (Dash): ``create_app`` / ``run_ui`` live in :mod:`.app`.

Nothing heavy is imported here, so ``import mltrace_otel.dashboards`` stays cheap; dash and
plotly load when :mod:`.app` does. May import: :mod:`mltrace_otel.store`, settings, errors.
"""
