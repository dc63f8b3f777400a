"""Component and its ``run`` decorator; ``register`` (mltrace's decorator factory).

Every call of a decorated function is one run = one span (see :mod:`mltrace_otel.sdk.spans`).
Order, as in mltrace: versions of input files (literal inputs, and input_vars that are
arguments: read before the function can overwrite them) → start timestamp → beforeTests (the
call's arguments) → the function (its locals captured at return when needed) → end timestamp →
pointers collected (a missing variable or mismatched list is a ValueError and nothing is
logged) → versions of output files, and of inputs only named at return → afterTests (the
locals) → the run is emitted. A function that raises, or a failing test, still emits the run (status
ERROR, an ``exception`` event) and the exception propagates unchanged.

Plain, ``async def`` and generator functions are supported: the span covers the awaited body,
or the iteration of the generator. While the function runs, the run's span is the current span,
so spans the function creates (nested runs, the application's own tracing) are its children.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace

from mltrace_otel import conventions as C
from mltrace_otel.sdk import artifacts, files, spans
from mltrace_otel.sdk.capture import call_capturing_locals, frame_locals
from mltrace_otel.sdk.compat import check_extra_arguments
from mltrace_otel.sdk.git import process_git_info
from mltrace_otel.sdk.pointers import IOPointer, needs_file_version, with_file_version
from mltrace_otel.sdk.testing import TestFailure, TestOutcome, run_tests

_log = logging.getLogger("mltrace_otel.sdk")
_AutoInputs = tuple[list[IOPointer], set[str]]
_time_ns = time.time_ns
_NO_VERSIONS: dict[str, str] = {}  # shared, never written: a run with no input file names
_NO_OUTCOMES: list[TestOutcome] = []  # shared, never written: a run without beforeTests


class Component:
    """A pipeline stage and its static metadata (mltrace's Component; subclass freely).

    Args:
        name: the component's name (the span name of its runs).
        owner: who owns it.
        description: what it does.
        beforeTests: Test classes run before each run, with the call's arguments.
        afterTests: Test classes run after each run, with the function's local variables.
        tags: strings to find the component by.
    """

    def __init__(self, name: str = "", owner: str = "", description: str = "",
                 beforeTests: list | None = None, afterTests: list | None = None,  # noqa: N803
                 tags: list[str] | None = None) -> None:
        self._name = name
        self._owner = owner
        self._description = description
        self._tags = list(tags or [])
        self._beforeTests = list(beforeTests or [])
        self._afterTests = list(afterTests or [])

    @property
    def name(self) -> str:
        return self._name

    @property
    def owner(self) -> str:
        return self._owner

    @property
    def description(self) -> str:
        return self._description

    @property
    def tags(self) -> list[str]:
        return self._tags

    @property
    def beforeTests(self) -> list:  # noqa: N802 - mltrace's name
        return self._beforeTests

    @property
    def afterTests(self) -> list:  # noqa: N802 - mltrace's name
        return self._afterTests

    def beforeRun(self, **kwargs: Any) -> list[TestOutcome]:  # noqa: N802 - mltrace's name
        """Run every beforeTests test with these arguments (raises on the first failure)."""
        return _unwrap_failure(self._beforeTests, kwargs, "before")

    def afterRun(self, **local_vars: Any) -> list[TestOutcome]:  # noqa: N802 - mltrace's name
        """Run every afterTests test with these local variables (raises on the first failure)."""
        return _unwrap_failure(self._afterTests, local_vars, "after")

    def to_dictionary(self) -> dict[str, Any]:
        return {"name": self._name, "owner": self._owner, "description": self._description,
                "tags": list(self._tags)}

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self._name!r}, owner={self._owner!r}, "
                f"description={self._description!r}, tags={self._tags!r})")

    def run(self, inputs: Any = None, outputs: list[str] | None = None,
            input_vars: list[str] | None = None, output_vars: list[str] | None = None,
            input_kwargs: dict[str, str] | None = None, output_kwargs: dict[str, str] | None = None,
            endpoint: bool = False, staleness_threshold: int = C.DEFAULT_STALENESS_THRESHOLD_S,
            auto_log: bool = False, *user_args: Any, **user_kwargs: Any) -> Any:
        """Decorator logging each call of the function as a run; usable bare (``@c.run``) or
        called (``@c.run(inputs=[...], ...)``).

        Args:
            inputs / outputs: literal pointer names.
            input_vars / output_vars: names of local variables whose values (a str or a list of
                str) are pointer names; None values are skipped, a missing name is a ValueError.
            input_kwargs / output_kwargs: {name_var: value_var}: the pointer name from one local,
                its value (fingerprinted) from another; lists pair element-wise.
            endpoint: mark the outputs ENDPOINT.
            staleness_threshold: seconds after which an input counts as stale for this run.
            auto_log: save and log arguments and locals that look like data or models.
            user_kwargs: ``skip_before=True`` / ``skip_after=True`` skip the tests; any other
                ``test_param="function_var"`` passes the function's variable to tests under
                the test's parameter name (mltrace's renaming).

        Raises:
            TypeError: a keyword that is none of these (e.g. ``input_filenames``), naming it:
                mltrace 0.17 raised too, and a run logged without the inputs the caller meant
                to declare would be silently wrong. A renaming keyword must be a str naming a
                parameter of one of the component's test methods. Extra positional arguments
                are refused the same way. ``component_name="..."`` (which mltrace's own tests
                pass, and 0.17 ignored) is ignored, with a warning when it differs from the
                component's name.
        """
        if callable(inputs) and not isinstance(inputs, (list, tuple, str)):
            return _decorate(self, inputs, _RunOptions())
        check_extra_arguments(self, user_args, user_kwargs)
        opts = _RunOptions(inputs, outputs, input_vars, output_vars, input_kwargs, output_kwargs,
                           endpoint, staleness_threshold, auto_log, user_kwargs)
        return lambda func: _decorate(self, func, opts)


def register(component_name: str, inputs: list[str] | None = None, outputs: list[str] | None = None,
             input_vars: list[str] | None = None, output_vars: list[str] | None = None,
             input_kwargs: dict[str, str] | None = None, output_kwargs: dict[str, str] | None = None,
             endpoint: bool = False, staleness_threshold: int = C.DEFAULT_STALENESS_THRESHOLD_S,
             auto_log: bool = False) -> Callable[[Callable[..., Any]], Any]:
    """mltrace's decorator factory: ``@register("name", inputs=[...], ...)`` logs each call of
    the function as a run of component ``component_name`` (no tests), with the same options
    as :meth:`Component.run`."""
    return Component(component_name).run(inputs, outputs, input_vars, output_vars, input_kwargs,
                                         output_kwargs, endpoint, staleness_threshold, auto_log)


def _unwrap_failure(tests: list, values: dict[str, Any], phase: str) -> list[TestOutcome]:
    try:
        return run_tests(tests, values, phase)
    except TestFailure as f:
        raise f.error from None


def _as_list(v: Any) -> list:
    if v is None:
        return []
    if isinstance(v, (str, bytes)):
        return [v]
    return list(v)


class _RunOptions:
    def __init__(self, inputs: Any = None, outputs: Any = None, input_vars: Any = None,
                 output_vars: Any = None, input_kwargs: Any = None, output_kwargs: Any = None,
                 endpoint: bool = False, staleness_threshold: int = C.DEFAULT_STALENESS_THRESHOLD_S,
                 auto_log: bool = False, user_kwargs: dict[str, Any] | None = None) -> None:
        uk = dict(user_kwargs or {})
        self.inputs = [str(x) for x in _as_list(inputs)]
        self.outputs = [str(x) for x in _as_list(outputs)]
        if isinstance(input_vars, dict):  # mltrace 0.17's {var: label_var}: labels are not kept
            if any(v is not None for v in input_vars.values()):
                _log.warning("mltrace: input_vars labels (%s) are not supported; the variables are "
                             "logged as inputs without labels", ", ".join(map(str, input_vars)))
            input_vars = list(input_vars)
        self.input_vars = _as_list(input_vars)
        self.output_vars = _as_list(output_vars)
        self.input_kwargs = dict(input_kwargs or {})
        self.output_kwargs = dict(output_kwargs or {})
        self.endpoint = bool(endpoint)
        self.staleness_threshold = int(staleness_threshold)
        self.auto_log = bool(auto_log)
        self.skip_before = bool(uk.pop("skip_before", False))
        self.skip_after = bool(uk.pop("skip_after", False))
        # mltrace: run(..., test_param="function_var") renames values passed to tests
        self.renames = {v: k for k, v in uk.items() if isinstance(v, str)}


def _rename(values: dict[str, Any], renames: dict[str, str]) -> dict[str, Any]:
    if not renames:
        return values
    return {renames.get(k, k): v for k, v in values.items()}


def _decorate(component: Component, func: Callable[..., Any], opts: _RunOptions) -> Any:
    spec = _Spec(component, func, opts)
    if inspect.isasyncgenfunction(func):
        wrapper = _async_gen_wrapper(spec)
    elif inspect.iscoroutinefunction(func):
        wrapper = _async_wrapper(spec)
    elif inspect.isgeneratorfunction(func):
        wrapper = _gen_wrapper(spec)
    else:
        wrapper = _sync_wrapper(spec)
    functools.update_wrapper(wrapper, func)
    wrapper.__mltrace_component__ = component  # type: ignore[attr-defined]
    return wrapper


class _Spec:
    """Everything about one decorated function that does not change between calls."""

    def __init__(self, component: Component, func: Callable[..., Any], opts: _RunOptions) -> None:
        self.component = component
        self.func = func
        self.opts = opts
        inner = inspect.unwrap(func)
        self.code = getattr(inner, "__code__", None)
        self.name = component.name
        try:
            self.signature: inspect.Signature | None = inspect.signature(func)
        except (TypeError, ValueError):
            self.signature = None
        self.needs_locals = bool(opts.input_vars or opts.output_vars or opts.input_kwargs
                                 or opts.output_kwargs or opts.auto_log
                                 or (component.afterTests and not opts.skip_after))
        self.slow = bool(self.needs_locals or opts.auto_log or component.afterTests)
        # pointers named at return (locals, auto_log): the pointer attributes are set once, when
        # the run ends, rather than at the start and again at the end
        self.io_at_end = bool(opts.input_vars or opts.output_vars or opts.input_kwargs
                              or opts.output_kwargs or opts.auto_log)
        lit_out = [IOPointer(n) for n in opts.outputs]
        self.lit_inputs = [IOPointer(n) for n in opts.inputs]
        self.lit_outputs = spans.endpoint_outputs(lit_out) if opts.endpoint else lit_out
        self.input_names = [p.name for p in self.lit_inputs]
        self.input_name_set = frozenset(self.input_names)
        # names that may be local files: versioned per call (one lstat each), never cached here
        self.input_files = list(dict.fromkeys(
            p.name for p in self.lit_inputs if needs_file_version(p) and files.local_path(p.name)))
        self.output_files = any(needs_file_version(p) and files.local_path(p.name)
                                for p in self.lit_outputs)
        self.arg_input_vars = _argument_vars(self.signature, self.opts.input_vars)
        # (input versions, static attributes, both merged) of the latest call; never mutated
        self.versioned_attrs: tuple[list[str], dict[str, Any], dict[str, Any]] | None = None
        try:
            src = inspect.getsource(func)
        except (OSError, TypeError):
            src = ""
        self.snapshot = spans.snapshot(src)
        self.code_file = (self.code.co_filename if self.code is not None else "")
        self.attrs: dict[str, Any] | None = None

    def prepare(self) -> dict[str, Any]:
        """Static attributes, computed at the first call (git looked up once per process)."""
        c = self.component
        attrs = spans.component_attributes(c.name, c.owner, c.description, c.tags)
        attrs[C.RUN_STALENESS_THRESHOLD_S] = self.opts.staleness_threshold
        attrs[C.RUN_ENDPOINT] = bool(self.opts.endpoint)
        commit, tags = process_git_info()
        if commit:
            attrs[C.VCS_REVISION] = commit
        if tags:
            attrs[C.GIT_TAGS] = list(tags)
        attrs[C.CODE_FUNCTION] = getattr(self.func, "__qualname__", getattr(self.func, "__name__", ""))
        if self.code_file:
            attrs[C.CODE_FILE] = self.code_file
        if self.snapshot:
            attrs[C.CODE_SNAPSHOT] = self.snapshot
        if not self.io_at_end:
            attrs.update(spans.pointer_attributes(self.lit_inputs, self.lit_outputs))
        self.attrs = spans.clean(attrs)  # checked once here, put on every run's span as they are
        return self.attrs

    # --- phases ------------------------------------------------------------------------------
    def start(self, args: tuple, kwargs: dict) -> tuple[Any, dict[str, str], _AutoInputs | None]:
        """Start the run's span; return it, the versions of the input files named so far
        ({name: version}), taken now, before the function can change them, and with auto_log
        the arguments' pointers (saved before the run starts, as mltrace did, so saving them
        is not counted in the run's duration)."""
        attrs = self.attrs or self.prepare()
        pre = _NO_VERSIONS
        if self.input_files or self.arg_input_vars:
            pre, attrs = self.input_versions(args, kwargs, attrs)
        auto = self.auto_inputs(args, kwargs) if self.opts.auto_log else None
        links = spans.links_for(self.input_names) if self.input_names else None
        return spans.start_run_span(self.name, attrs, links, _time_ns()), pre, auto

    def auto_inputs(self, args: tuple, kwargs: dict) -> _AutoInputs:
        """auto_log's input pointers (arguments, defaults included) and the argument names."""
        call = self.call_args(args, kwargs)
        try:
            return artifacts.auto_log_pointers(call, self.name, inputs=True), set(call)
        except Exception as e:  # noqa: BLE001 - auto_log never breaks the run
            _log.warning("mltrace: auto_log failed: %s", e)
            return [], set(call)

    def input_versions(self, args: tuple, kwargs: dict,
                       attrs: dict[str, Any]) -> tuple[dict[str, str], dict[str, Any]]:
        """Versions of the literal input files and of the file names input_vars arguments hold
        at call time; the static attributes, with the literal inputs' versions filled in."""
        pre: dict[str, str] = {}
        try:
            for name in self.input_files:
                pre[name] = files.file_version(name)
            if self.arg_input_vars:
                call = self.call_args(args, kwargs)
                for var in self.arg_input_vars:
                    val = call.get(var)
                    for n in (val if isinstance(val, (list, tuple)) else () if val is None else (val,)):
                        if not _is_name(n):
                            continue
                        name = os.fspath(n) if isinstance(n, os.PathLike) else str(n)
                        if name not in pre and files.local_path(name):
                            pre[name] = files.file_version(name)
            if not self.io_at_end and any(pre.values()):
                versions = [pre.get(n, "") for n in self.input_names]  # literal names carry no value
                last = self.versioned_attrs  # unchanged files: the previous call's attributes
                if last is not None and last[0] == versions and last[1] is attrs:
                    return pre, last[2]
                new = {**attrs, C.RUN_INPUT_VERSIONS: tuple(versions)}
                self.versioned_attrs = (versions, attrs, new)
                attrs = new
        except Exception:  # noqa: BLE001 - telemetry never breaks the host program
            _log.warning("mltrace: could not version the inputs of %s", self.name, exc_info=True)
        return pre, attrs

    def call_args(self, args: tuple, kwargs: dict) -> dict[str, Any]:
        if self.signature is None:
            return dict(kwargs)
        try:
            bound = self.signature.bind_partial(*args, **kwargs)
            bound.apply_defaults()
            values = dict(bound.arguments)
        except TypeError:
            return dict(kwargs)
        for p in self.signature.parameters.values():  # flatten **kwargs
            if p.kind is inspect.Parameter.VAR_KEYWORD and isinstance(values.get(p.name), dict):
                values.update(values.pop(p.name))
        return values

    def before_tests(self, span: Any, args: tuple, kwargs: dict, io: artifacts.RunIO,
                     pre: dict[str, str], auto: _AutoInputs | None = None) -> list[TestOutcome]:
        """Record auto_log's input pointers (taken before the function could change the
        arguments), run beforeTests; on a test failure record the run and raise the test's
        exception."""
        if auto is not None:
            io.auto_in, io.arg_names = auto
        tests = self.component.beforeTests
        if not tests or self.opts.skip_before:
            return []
        try:
            return run_tests(tests, _rename(self.call_args(args, kwargs), self.opts.renames), "before")
        except TestFailure as f:
            end = _time_ns()
            self.emit(span, end, list(self.lit_inputs), [], f.outcomes, {}, None, f, pre)
            raise f.error from None

    def finish(self, span: Any, end: int, args: tuple, kwargs: dict, value: Any,
               local_vars: dict[str, Any] | None, exc: BaseException | None, io: artifacts.RunIO,
               before: list[TestOutcome], pre: dict[str, str], strict: bool = True) -> None:
        """Collect pointers, run afterTests, emit. Raises ValueError (nothing logged) for a missing
        variable, or the after test's exception (run logged)."""
        if (not self.slow and exc is None and value is None and not before and not io.loaded
                and not io.saved):  # the common case: literal pointers only, nothing to add
            try:
                outputs = self.lit_outputs
                if self.output_files:
                    outputs = self.output_versions(span, outputs)
                span.end(end_time=end)
                if outputs:
                    spans.remember_outputs(outputs, span.get_span_context())
            except Exception:  # noqa: BLE001
                _log.warning("mltrace: could not emit the run of %s", self.name, exc_info=True)
            return
        opts = self.opts
        inputs = list(self.lit_inputs)
        outputs = list(self.lit_outputs)
        values: dict[str, Any] = {}
        if local_vars is not None or (self.needs_locals and exc is None):
            loc = local_vars or {}
            strict = strict and exc is None and local_vars is not None
            new_in, new_out = _pointers_from_locals(opts, loc, strict, values)
            inputs += new_in
            outputs += spans.endpoint_outputs(new_out) if opts.endpoint else new_out
        if io.loaded:
            inputs += io.loaded
        if io.saved:
            outputs += io.saved
            for p in io.saved:
                values[p.name] = p.value
        if io.auto_in:
            inputs += io.auto_in
        if opts.auto_log and exc is None:
            try:
                rest = {k: v for k, v in (local_vars or {}).items() if k not in io.arg_names}
                auto_out = artifacts.auto_log_pointers(rest, self.name, inputs=False)
                outputs += auto_out
                for p in auto_out:
                    values[p.name] = p.value
            except Exception as e:  # noqa: BLE001 - auto_log never breaks the run
                _log.warning("mltrace: auto_log failed: %s", e)
        if exc is None and value is not None:
            values[outputs[0].name if len(outputs) == 1 else "return"] = value
        outcomes = list(before)
        failure: TestFailure | None = None
        if exc is None and self.component.afterTests and not opts.skip_after:
            try:
                outcomes += run_tests(self.component.afterTests,
                                      _rename(local_vars or {}, opts.renames), "after")
            except TestFailure as f:
                outcomes += f.outcomes
                failure = f
        self.emit(span, end, inputs, outputs, outcomes, values, exc, failure, pre)
        if failure is not None:
            raise failure.error from None

    def output_versions(self, span: Any, outputs: list[IOPointer]) -> list[IOPointer]:
        """The literal outputs with the versions of the files they name now (after the function
        returned); sets them on the span when any is a file."""
        version = files.file_version
        versions = [version(p._name) for p in outputs]  # literal names carry no value
        if not any(versions):
            return outputs
        spans.put(span, {C.RUN_OUTPUT_VERSIONS: tuple(versions)})
        return [IOPointer(p.name, "", p.pointer_type, p.flag, version=v)
                for p, v in zip(outputs, versions, strict=True)]

    def emit(self, span: Any, end: int, inputs: list[IOPointer], outputs: list[IOPointer],
             outcomes: list[TestOutcome], values: dict[str, Any], exc: BaseException | None,
             failure: TestFailure | None, pre: dict[str, str]) -> None:
        """Set the dynamic parts of the span and end it; never raises. Input file versions come
        from ``pre`` (taken before the call) or, for names only known now, are taken now; output
        file versions are taken now."""
        try:
            lit = self.lit_inputs
            if (self.io_at_end or len(inputs) != len(lit) or len(outputs) != len(self.lit_outputs)
                    or failure is not None):
                inputs = [with_file_version(p, pre) for p in spans.dedupe(inputs)]
                outputs = [with_file_version(p) for p in spans.dedupe(outputs)]
                spans.put(span, spans.pointer_attributes(inputs, outputs))
                known = self.input_name_set
                for link in spans.links_for([p._name for p in inputs if p._name not in known]):
                    span.add_link(link.context, link.attributes)
            elif self.output_files:
                outputs = self.output_versions(span, outputs)
            if outcomes:
                spans.add_test_events(span, outcomes)
            if values:
                spans.add_stats_events(span, values)
            if exc is not None:
                spans.record_failure(span, exc)
            elif failure is not None:
                o = failure.outcomes[-1]
                spans.record_failure(span, failure.error,
                                     f"{o.phase} test {o.name}.{o.method} failed: {o.message}"[:1000])
            span.end(end_time=end)
            if outputs:
                spans.remember_outputs(outputs, span.get_span_context())
        except Exception:  # noqa: BLE001 - telemetry never breaks the host program
            _log.warning("mltrace: could not emit the run of %s", self.name, exc_info=True)


def _is_name(n: Any) -> bool:
    """Whether a variable's value names a pointer (a str, a path, an id) rather than being data."""
    return isinstance(n, (str, os.PathLike)) or (isinstance(n, int) and not isinstance(n, bool))


def _argument_vars(signature: inspect.Signature | None, names: list) -> list[str]:
    """The input_vars that are the function's arguments (their call-time values name inputs)."""
    if signature is None or not names:
        return []
    params = signature.parameters
    var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    star = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    return [n for n in names if isinstance(n, str)
            and ((n in params and params[n].kind not in star) or (var_kw and n not in params))]


def _pointers_from_locals(opts: _RunOptions, loc: dict[str, Any], strict: bool,
                          values: dict[str, Any]) -> tuple[list[IOPointer], list[IOPointer]]:
    inputs: list[IOPointer] = []
    outputs: list[IOPointer] = []
    for var_list, dest, is_in in ((opts.input_vars, inputs, True), (opts.output_vars, outputs, False)):
        for var in var_list:
            if var not in loc:
                if strict:
                    raise ValueError(f"Variable {var} not in current stack frame.")
                continue
            val = loc[var]
            if val is None:
                continue
            if type(val) is str:  # the common case: one name
                if val:
                    dest.append(IOPointer(val))
                continue
            names = val if isinstance(val, (list, tuple)) else [val]
            if all(_is_name(n) for n in names):  # "" names nothing (an unset optional argument)
                dest.extend(IOPointer(os.fspath(n) if isinstance(n, os.PathLike) else str(n))
                            for n in names if n != "")
            else:  # data, not names (a DataFrame): logged as an artifact, as mltrace 0.17 did
                try:
                    new = artifacts.value_pointers({var: val}, inputs=is_in)
                except Exception as e:  # noqa: BLE001 - never breaks the run
                    _log.warning("mltrace: could not log variable %s: %s", var, e)
                    continue
                dest.extend(new)
                if not is_in:
                    values.update((p.name, p.value) for p in new)
    for kw, dest, is_out in ((opts.input_kwargs, inputs, False), (opts.output_kwargs, outputs, True)):
        for key, val_var in kw.items():
            if key not in loc or val_var not in loc:
                if strict:
                    missing = key if key not in loc else val_var
                    raise ValueError(f"Variables ({key}, {val_var}) not in current stack frame: "
                                     f"{missing} is missing.")
                continue
            names, vals = loc[key], loc[val_var]
            if names is None:
                continue
            if isinstance(names, (list, tuple)):
                if not isinstance(vals, (list, tuple)) or len(vals) != len(names):
                    if strict:
                        raise ValueError(f'Value "{val_var}" does not have the same length as the key '
                                         f'"{key}."')
                    continue
                pairs = list(zip(names, vals, strict=True))
            else:
                pairs = [(names, vals)]
            for n, v in pairs:
                p = IOPointer(str(n), v)
                dest.append(p)
                if is_out:
                    values[p.name] = v
    return inputs, outputs


# --- wrappers --------------------------------------------------------------------------------


def _enter(span: Any, name: str) -> tuple[object, Any, artifacts.RunIO]:
    io = artifacts.RunIO(name)
    return otel_context.attach(trace.set_span_in_context(span)), artifacts.ACTIVE.set(io), io


def _leave(ctx_token: object, io_token: Any) -> None:
    artifacts.ACTIVE.reset(io_token)
    otel_context.detach(ctx_token)  # type: ignore[arg-type]


def _sync_wrapper(spec: _Spec) -> Callable[..., Any]:
    func = spec.func

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        span, pre, auto = spec.start(args, kwargs)
        ctx_token, io_token, io = _enter(span, spec.name)
        try:
            before = (spec.before_tests(span, args, kwargs, io, pre, auto)
                      if auto is not None or spec.component.beforeTests else _NO_OUTCOMES)
            if spec.needs_locals:
                value, loc, exc = call_capturing_locals(func, spec.code, args, kwargs)
            else:
                loc = exc = None
                try:
                    value = func(*args, **kwargs)
                except BaseException as e:  # noqa: BLE001
                    value, exc = None, e
        finally:
            _leave(ctx_token, io_token)
        end = _time_ns()
        spec.finish(span, end, args, kwargs, value, loc, exc, io, before, pre)
        if exc is not None:
            raise exc
        return value

    return wrapper


def _async_wrapper(spec: _Spec) -> Callable[..., Any]:
    func = spec.func

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        span, pre, auto = spec.start(args, kwargs)
        ctx_token, io_token, io = _enter(span, spec.name)
        loc = exc = value = None
        try:
            before = spec.before_tests(span, args, kwargs, io, pre, auto)
            coro = func(*args, **kwargs)
            frame = getattr(coro, "cr_frame", None)
            try:
                value = await coro
            except BaseException as e:  # noqa: BLE001
                exc = e
            if spec.needs_locals:
                loc = frame_locals(frame)
        finally:
            _leave(ctx_token, io_token)
        end = _time_ns()
        spec.finish(span, end, args, kwargs, value, loc, exc, io, before, pre)
        if exc is not None:
            raise exc
        return value

    return wrapper


def _gen_wrapper(spec: _Spec) -> Callable[..., Any]:
    func = spec.func

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        span, pre, auto = spec.start(args, kwargs)
        ctx_token, io_token, io = _enter(span, spec.name)
        try:
            before = spec.before_tests(span, args, kwargs, io, pre, auto)
            gen = func(*args, **kwargs)
        finally:
            _leave(ctx_token, io_token)
        frame = gen.gi_frame
        exc: BaseException | None = None
        value = None
        closed = False
        try:
            while True:
                ctx_token = otel_context.attach(trace.set_span_in_context(span))
                io_token = artifacts.ACTIVE.set(io)
                try:
                    item = next(gen)
                except StopIteration as stop:
                    value = stop.value
                    break
                finally:
                    _leave(ctx_token, io_token)
                yield item
        except GeneratorExit:
            gen.close()
            closed = True
        except BaseException as e:  # noqa: BLE001
            exc = e
        end = _time_ns()
        spec.finish(span, end, args, kwargs, value, frame_locals(frame) if spec.needs_locals else None,
                    exc, io, before, pre, strict=not closed)
        if exc is not None:
            raise exc
        return value

    return wrapper


def _async_gen_wrapper(spec: _Spec) -> Callable[..., Any]:
    func = spec.func

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        span, pre, auto = spec.start(args, kwargs)
        ctx_token, io_token, io = _enter(span, spec.name)
        try:
            before = spec.before_tests(span, args, kwargs, io, pre, auto)
            agen = func(*args, **kwargs)
        finally:
            _leave(ctx_token, io_token)
        frame = agen.ag_frame
        exc: BaseException | None = None
        closed = False
        try:
            while True:
                ctx_token = otel_context.attach(trace.set_span_in_context(span))
                io_token = artifacts.ACTIVE.set(io)
                try:
                    item = await agen.__anext__()
                except StopAsyncIteration:
                    break
                finally:
                    _leave(ctx_token, io_token)
                yield item
        except GeneratorExit:
            await agen.aclose()
            closed = True
        except BaseException as e:  # noqa: BLE001
            exc = e
        end = _time_ns()
        spec.finish(span, end, args, kwargs, None, frame_locals(frame) if spec.needs_locals else None,
                    exc, io, before, pre, strict=not closed)
        if exc is not None:
            raise exc

    return wrapper
