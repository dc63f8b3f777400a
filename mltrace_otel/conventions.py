"""Span conventions: every attribute, event and link name mltrace-otel reads or writes.

This module is the contract between the SDK, the store, the collector and emitters in other
languages. A span is a component run when it carries :data:`COMPONENT_NAME`. No other module
spells these strings; they import them from here. The README's "Span conventions" table
documents each one (``tests/test_docs.py`` fails when one is missing).

Imports nothing from the project.
"""

from __future__ import annotations

from typing import Final

# --- component (static metadata) -------------------------------------------------------------
COMPONENT_NAME: Final = "mltrace.component.name"
"""str: the component this run belongs to; its presence makes a span a run."""
COMPONENT_OWNER: Final = "mltrace.component.owner"
"""str: the component's owner."""
COMPONENT_DESCRIPTION: Final = "mltrace.component.description"
"""str: the component's description."""
COMPONENT_TAGS: Final = "mltrace.component.tags"
"""str[]: the component's tags."""

# --- run (dynamic metadata) ------------------------------------------------------------------
RUN_INPUTS: Final = "mltrace.run.inputs"
"""str[]: names of the IO pointers the run read."""
RUN_OUTPUTS: Final = "mltrace.run.outputs"
"""str[]: names of the IO pointers the run wrote."""
RUN_INPUT_VERSIONS: Final = "mltrace.run.input_versions"
"""str[] parallel to inputs: content fingerprint of each input's value where known, else ""."""
RUN_OUTPUT_VERSIONS: Final = "mltrace.run.output_versions"
"""str[] parallel to outputs: content fingerprint of each output's value where known, else ""."""
WEAK_VERSION_PREFIX: Final = "w:"
"""Prefix of a *weak* version in input_versions / output_versions: the value (or a part of it)
had no canonical fingerprint rule and is identified by its class and repr, mltrace's rule
(see mltrace_otel.sdk.fingerprints). Any other non-empty version is a content version. Weak
and content versions match only their own kind: versions are compared as whole strings."""
RUN_INPUT_TYPES: Final = "mltrace.run.input_types"
"""str[] parallel to inputs: DATA, MODEL, ENDPOINT or UNKNOWN."""
RUN_OUTPUT_TYPES: Final = "mltrace.run.output_types"
"""str[] parallel to outputs: DATA, MODEL, ENDPOINT or UNKNOWN."""
RUN_UPSTREAM: Final = "mltrace.run.upstream"
"""str[]: component names given to ComponentRun.set_upstream; each resolves to that
component's latest run that started no later than this run (resolved at query time)."""
RUN_STALENESS_THRESHOLD_S: Final = "mltrace.run.staleness_threshold_s"
"""int: seconds; an input produced longer than this before the run started makes it stale."""
RUN_NOTES: Final = "mltrace.run.notes"
"""str: notes given at run time (notes added later live in the store's notes table)."""
RUN_ENDPOINT: Final = "mltrace.run.endpoint"
"""bool: the run was declared an endpoint (its outputs are ENDPOINT pointers)."""

# --- code and version control ----------------------------------------------------------------
VCS_REVISION: Final = "vcs.ref.head.revision"
"""str: git commit of the working tree (OTel semantic convention name)."""
GIT_TAGS: Final = "mltrace.git.tags"
"""str[]: git tags pointing at that commit."""
CODE_FUNCTION: Final = "code.function.name"
"""str: the decorated function's qualified name (OTel semantic convention name)."""
CODE_FILE: Final = "code.file.path"
"""str: the file the function is defined in (OTel semantic convention name)."""
CODE_SNAPSHOT: Final = "mltrace.code.snapshot"
"""str: the function's source, capped at CODE_SNAPSHOT_MAX_BYTES."""
CODE_SNAPSHOT_MAX_BYTES: Final = 65536
"""The largest code snapshot recorded (mltrace's 64 KB cap)."""

# --- events ----------------------------------------------------------------------------------
EVENT_TEST: Final = "mltrace.test"
"""Span event: one before/after test method's outcome."""
TEST_NAME: Final = "mltrace.test.name"
"""str: the Test's name (Test(name=...), else its class name)."""
TEST_METHOD: Final = "mltrace.test.method"
"""str: the test method's name, e.g. testZScore."""
TEST_PHASE: Final = "mltrace.test.phase"
"""str: "before" or "after"."""
TEST_PASSED: Final = "mltrace.test.passed"
"""bool: whether the method returned without raising."""
TEST_MESSAGE: Final = "mltrace.test.message"
"""str: the exception's type and message when it failed, else ""."""

EVENT_OUTPUT_STATS: Final = "mltrace.output.stats"
"""Span event: a compact summary of one numeric output (or DataFrame column)."""
STATS_OUTPUT: Final = "mltrace.output.name"
"""str: the output pointer (or local variable) the summary describes."""
STATS_COLUMN: Final = "mltrace.output.column"
"""str: the DataFrame column, "" for a scalar or array."""
STATS_COUNT: Final = "mltrace.output.count"
"""int: number of values, nulls included."""
STATS_NULLS: Final = "mltrace.output.nulls"
"""int: number of null / NaN values."""
STATS_MIN: Final = "mltrace.output.min"
"""double: smallest non-null value."""
STATS_MAX: Final = "mltrace.output.max"
"""double: largest non-null value."""
STATS_MEAN: Final = "mltrace.output.mean"
"""double: mean of the non-null values."""
STATS_SUM: Final = "mltrace.output.sum"
"""double: sum of the non-null values."""
STATS_SKETCH: Final = "mltrace.output.sketch"
"""str: a mergeable quantile sketch (JSON, format documented in mltrace_otel.sdk.stats)."""

EVENT_EXCEPTION: Final = "exception"
"""Span event (OTel standard) recorded when the function or a test raised."""

# --- links -----------------------------------------------------------------------------------
LINK_IO_NAME: Final = "mltrace.io.name"
"""Link attribute: the input pointer through which the linked (producing) run feeds this one."""

# --- resource / scope ------------------------------------------------------------------------
SCOPE_NAME: Final = "mltrace_otel"
"""Instrumentation scope name of every span the SDK emits."""
DEFAULT_SERVICE_NAME: Final = "mltrace"
"""service.name used when OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES set none."""

POINTER_TYPES: Final = ("DATA", "MODEL", "ENDPOINT", "UNKNOWN")
"""The values of the *_types attributes."""

DEFAULT_STALENESS_THRESHOLD_S: Final = 2592000
"""30 days, mltrace's default staleness threshold."""

ALL_ATTRIBUTES: Final = (
    COMPONENT_NAME, COMPONENT_OWNER, COMPONENT_DESCRIPTION, COMPONENT_TAGS,
    RUN_INPUTS, RUN_OUTPUTS, RUN_INPUT_VERSIONS, RUN_OUTPUT_VERSIONS, RUN_INPUT_TYPES,
    RUN_OUTPUT_TYPES, RUN_UPSTREAM, RUN_STALENESS_THRESHOLD_S, RUN_NOTES, RUN_ENDPOINT,
    VCS_REVISION, GIT_TAGS, CODE_FUNCTION, CODE_FILE, CODE_SNAPSHOT,
    TEST_NAME, TEST_METHOD, TEST_PHASE, TEST_PASSED, TEST_MESSAGE,
    STATS_OUTPUT, STATS_COLUMN, STATS_COUNT, STATS_NULLS, STATS_MIN, STATS_MAX, STATS_MEAN,
    STATS_SUM, STATS_SKETCH, LINK_IO_NAME,
)
"""Every attribute name above, for documentation checks."""

ALL_EVENTS: Final = (EVENT_TEST, EVENT_OUTPUT_STATS, EVENT_EXCEPTION)
"""Every span event name above."""
