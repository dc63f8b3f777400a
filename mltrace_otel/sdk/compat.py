"""What ``Component.run()`` accepts beyond its own options, checked when it is called.

mltrace's ``run()`` takes ``**user_kwargs``: ``skip_before`` / ``skip_after``, and
``test_param="function_var"`` renames a variable for the component's tests. Anything else
(``input_filenames=[...]``, a keyword mltrace never had) would be logged as a run with no
inputs or outputs and no warning, so it is refused with a TypeError naming it.

Imports the standard library only.
"""

from __future__ import annotations

import inspect
import warnings
from typing import Any

_RUN_KEYWORDS = ("inputs", "outputs", "input_vars", "output_vars", "input_kwargs", "output_kwargs",
                 "endpoint", "staleness_threshold", "auto_log", "skip_before", "skip_after")


def _test_parameters(component: Any) -> set[str] | None:
    """Parameter names of the component's test methods; None when one takes ``**kwargs``."""
    names: set[str] = set()
    for test in [*component.beforeTests, *component.afterTests]:
        cls = test if isinstance(test, type) else type(test)
        for attr, member in inspect.getmembers(cls, callable):
            if not attr.startswith("test"):
                continue
            try:
                params = inspect.signature(member).parameters.values()
            except (TypeError, ValueError):
                return None
            for p in params:
                if p.kind is inspect.Parameter.VAR_KEYWORD:
                    return None
                names.add(p.name)
    names.discard("self")
    return names


def check_extra_arguments(component: Any, args: tuple, kwargs: dict[str, Any]) -> None:
    """Refuse what ``run()`` does not understand (see ``Component.run``).

    Raises:
        TypeError: extra positional arguments, or keywords that are neither skip_before /
            skip_after nor a str renaming a parameter of one of the component's test methods
            (``component_name="..."``, which mltrace's own tests pass, is ignored, with a
            warning when it differs from the component's name).
    """
    if args:
        raise TypeError(f"{type(component).__name__}.run() got {len(args)} unexpected positional "
                        f"argument(s) {args!r}; it takes {', '.join(_RUN_KEYWORDS)} (use keywords)")
    extra = {k: v for k, v in kwargs.items() if k not in ("skip_before", "skip_after")}
    name = extra.pop("component_name", None)
    if isinstance(name, str):  # mltrace's own tests pass it; 0.17 ignored it (as a renaming)
        if name != component.name:
            warnings.warn(f"mltrace: {type(component).__name__}.run(component_name={name!r}) is "
                          f"ignored: runs are logged as component {component.name!r}",
                          RuntimeWarning, stacklevel=3)
    elif name is not None:
        extra["component_name"] = name
    if not extra:
        return
    params = _test_parameters(component)
    bad = sorted(k for k, v in extra.items()
                 if not isinstance(v, str) or (params is not None and k not in params))
    if bad:
        raise TypeError(
            f"{type(component).__name__}.run() got unexpected keyword argument(s) "
            f"{', '.join(repr(k) for k in bad)}. It takes {', '.join(_RUN_KEYWORDS)}; any other "
            "keyword must rename a variable for the component's tests (test_param=\"variable\"), "
            "and none of its test methods has such a parameter.")
