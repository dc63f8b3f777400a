"""Capturing a function's local variables at return, without owning ``sys.settrace``.

mltrace read a decorated function's locals by installing a ``sys.settrace`` tracer, which
turns off debuggers and coverage tools. We use the *profile* hook instead, only until the
function's own frame starts: that ``call`` event hands us the frame, the previous profile
function (if any, which received every event meanwhile) is put back at once, and the rest of
the call runs without our hook, however many calls it makes. The frame object, held until the
function returns or raises, keeps the locals it ended with (as a traceback's frames do); they
are read then. ``sys.settrace`` is never touched, so pdb, IDE debuggers and coverage keep
working. Generators and coroutines need no hook at all: their frame object is reachable from
the generator and keeps its locals after it finishes.

Only installed when a run needs locals (input_vars, output_vars, *_kwargs, afterTests,
auto_log); the fast path calls the function directly.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from types import CodeType, FrameType
from typing import Any

_warned_c_profiler = False


def call_capturing_locals(func: Callable[..., Any], code: CodeType | None, args: tuple,
                          kwargs: dict) -> tuple[Any, dict[str, Any] | None, BaseException | None]:
    """Call ``func(*args, **kwargs)``; return (value, locals at return or None, exception or None).

    The exception, if any, is returned (not raised) so the caller can record the run first;
    the locals are captured on normal return and when the function raises.
    """
    global _warned_c_profiler
    prev = sys.getprofile()
    if code is None or (prev is not None and not callable(prev)):
        if prev is not None and not _warned_c_profiler:
            _warned_c_profiler = True
            warnings.warn("mltrace: a C-level profiler (e.g. cProfile) owns the profile hook; "
                          "local variables of decorated functions are not captured while it runs",
                          RuntimeWarning, stacklevel=3)
        try:
            return func(*args, **kwargs), None, None
        except BaseException as e:  # noqa: BLE001 - handed back to be recorded and re-raised
            return None, None, e

    target: FrameType | None = None

    def profiler(frame: FrameType, event: str, arg: Any) -> None:
        nonlocal target
        if target is None and event == "call" and frame.f_code is code:
            target = frame
            sys.setprofile(prev)  # found: the rest of the call runs without our hook
        if prev is not None:
            prev(frame, event, arg)

    sys.setprofile(profiler)
    exc: BaseException | None = None
    try:
        value = func(*args, **kwargs)
    except BaseException as e:  # noqa: BLE001 - handed back to be recorded and re-raised
        value, exc = None, e
    finally:
        sys.setprofile(prev)
    captured = frame_locals(target)
    target = None  # the frame's f_back leads back here: no reference cycle keeps the locals alive
    return value, captured, exc


def frame_locals(frame: FrameType | None) -> dict[str, Any] | None:
    """The locals a finished frame ended with: a decorated call's, or a generator's or
    coroutine's (CPython keeps them in the frame object while it is referenced, as for a
    traceback's frames)."""
    if frame is None:
        return None
    try:
        return dict(frame.f_locals)
    except Exception:  # noqa: BLE001
        return None
