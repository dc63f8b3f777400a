"""Test: reusable checks run before and after a component's function (mltrace's Test class).

Subclass :class:`Test` and define methods whose names start with lowercase ``test``; each is
called with the values whose names match its parameters (the call's arguments for
``beforeTests``, the function's local variables for ``afterTests``). A method that raises
fails the test: the run records the failure (a ``mltrace.test`` span event) and the exception
propagates, as in mltrace.
"""

from __future__ import annotations

import inspect
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TestOutcome:
    """The outcome of one test method (one ``mltrace.test`` span event)."""

    __test__ = False  # not a pytest test class

    name: str
    method: str
    phase: str
    passed: bool
    message: str
    time_ns: int


class TestFailure(Exception):
    """Carries the outcomes gathered before a test method raised (internal)."""

    __test__ = False

    def __init__(self, outcomes: list[TestOutcome], error: BaseException) -> None:
        super().__init__(str(error))
        self.outcomes = outcomes
        self.error = error


class Test:
    """Base class of mltrace tests.

    Args:
        name: the test's name as shown with its results (default: the class name).
    """

    __test__ = False  # keep pytest from collecting subclasses named Test*

    def __init__(self, name: str = "") -> None:
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    @name.setter
    def name(self, value: str) -> None:
        self._name = value

    def getTestMethods(self) -> list[Callable[..., Any]]:  # noqa: N802 - mltrace's name
        """All bound methods whose names start with ``test`` (sorted by name)."""
        return [m for n, m in inspect.getmembers(self, inspect.ismethod) if n.startswith("test")]

    def runTests(self, **kwargs: Any) -> dict[str, str]:  # noqa: N802 - mltrace's name
        """Run every test method with the matching keyword arguments.

        Returns:
            {method name: "success"} for each method.

        Raises:
            Exception: the first failing method's exception, unchanged.
        """
        status: dict[str, str] = {}
        for method in self.getTestMethods():
            method(**_matching(method, kwargs))
            status[method.__name__] = "success"
        return status

    # unittest-style helpers: a failed assertion fails the test
    def assertEqual(self, a: Any, b: Any, msg: str | None = None) -> None:  # noqa: N802
        if not a == b:
            raise AssertionError(msg or f"{a!r} != {b!r}")

    def assertNotEqual(self, a: Any, b: Any, msg: str | None = None) -> None:  # noqa: N802
        if not a != b:
            raise AssertionError(msg or f"{a!r} == {b!r}")

    def assertTrue(self, a: Any, msg: str | None = None) -> None:  # noqa: N802
        if not a:
            raise AssertionError(msg or f"{a!r} is not true")

    def assertFalse(self, a: Any, msg: str | None = None) -> None:  # noqa: N802
        if a:
            raise AssertionError(msg or f"{a!r} is not false")

    def assertGreater(self, a: Any, b: Any, msg: str | None = None) -> None:  # noqa: N802
        if not a > b:
            raise AssertionError(msg or f"{a!r} <= {b!r}")

    def assertLess(self, a: Any, b: Any, msg: str | None = None) -> None:  # noqa: N802
        if not a < b:
            raise AssertionError(msg or f"{a!r} >= {b!r}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self._name or type(self).__name__!r})"


def _matching(method: Callable[..., Any], values: dict[str, Any]) -> dict[str, Any]:
    try:
        params = inspect.signature(method).parameters
    except (TypeError, ValueError):
        return {}
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return dict(values)
    return {k: v for k, v in values.items() if k in params}


def run_tests(tests: list[Any], values: dict[str, Any], phase: str) -> list[TestOutcome]:
    """Run ``tests`` (Test classes or instances) in order; return each method's outcome.

    Raises:
        TestFailure: a method raised; carries the outcomes so far and the original exception.
    """
    outcomes: list[TestOutcome] = []
    for t in tests:
        try:
            inst = t() if isinstance(t, type) else t
        except Exception as e:
            outcomes.append(TestOutcome(getattr(t, "__name__", str(t)), "__init__", phase, False,
                                        _message(e), time.time_ns()))
            raise TestFailure(outcomes, e) from e
        name = getattr(inst, "_name", "") or type(inst).__name__
        methods = inst.getTestMethods() if hasattr(inst, "getTestMethods") else []
        for m in methods:
            try:
                m(**_matching(m, values))
            except Exception as e:
                outcomes.append(TestOutcome(name, m.__name__, phase, False, _message(e), time.time_ns()))
                raise TestFailure(outcomes, e) from e
            outcomes.append(TestOutcome(name, m.__name__, phase, True, "", time.time_ns()))
    return outcomes


def _message(e: BaseException) -> str:
    text = "".join(traceback.format_exception_only(type(e), e)).strip()
    return text[:4000]
