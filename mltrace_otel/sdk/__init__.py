"""The SDK: what a pipeline author imports (through ``mltrace_otel``'s public names).

Modules: ``component`` (Component, register: the decorator), ``run`` (ComponentRun,
log_component_run), ``pointers`` (IOPointer, PointerTypeEnum), ``fingerprints`` (value
versions, the same in every process), ``files`` (versions of local files), ``testing`` (Test),
``artifacts`` (save, load, auto_log), ``spans`` (span building, same-process links),
``capture`` (locals capture through the profile hook), ``export`` (private TracerProvider,
OTLP / spool, flush, delivery_stats, the test hook ``configure``), ``config`` (set_db_uri,
set_address, current_settings), ``compat`` (what ``run()`` accepts beyond its options),
``git``, ``ids``, ``stats`` (output statistics events).

May import: conventions, settings, errors, spool and opentelemetry. Never the store: pipelines
write spans (OTLP or the spool) and never open the store.
"""
