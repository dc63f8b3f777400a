"""mltrace's ``mltrace.entities`` names, so ``from mltrace.entities import ComponentRun`` (used by
mltrace's own examples) keeps working with the one import change
(``from mltrace_otel.entities import ComponentRun``).

The classes are the SDK's (:mod:`mltrace_otel.sdk`); nothing here is a second implementation.
mltrace 0.17's ``Task`` and ``Metric`` (label tasks and metric monitoring, outside its documented
API) and its submodules (``mltrace.entities.base_component``...) are not provided.

Imports the SDK only (never the store).
"""

from __future__ import annotations

from mltrace_otel.sdk.component import Component
from mltrace_otel.sdk.pointers import IOPointer, PointerTypeEnum
from mltrace_otel.sdk.run import ComponentRun
from mltrace_otel.sdk.testing import Test

__all__ = ["Component", "ComponentRun", "IOPointer", "PointerTypeEnum", "Test"]
