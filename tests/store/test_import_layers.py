"""The store package's imports point one way (issue 15, "a store with an interface").

Read from the source with ``ast``, so a cycle fails here rather than as an ImportError in
whichever process happens to import the modules in the wrong order:

- no import cycle among ``mltrace_otel/store`` modules, counting every import (module level,
  ``if TYPE_CHECKING``, inside functions);
- the query modules import store modules at the top only, never a connection or ingest module
  (they reach the store through :mod:`mltrace_otel.store.protocols`), and use no other
  module's private names;
- :class:`~mltrace_otel.store.core.Store` has every member of the protocols, with the same
  parameters.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import mltrace_otel.store
from mltrace_otel.store.protocols import (
    Connection,
    IngestConnection,
    SchemaConnection,
    SpanSink,
)

STORE = Path(mltrace_otel.store.__file__).parent

QUERY_MODULES = frozenset({
    "protocols", "models", "schema", "runs", "state", "causes", "staleness", "lineage", "review",
    "queries", "metrics_queries",
})
"""The query layer: what the API, CLI, UI and metrics ask the store through a Connection."""


def _store_imports(node: ast.AST, modules: frozenset[str]) -> list[tuple[str, list[str]]]:
    """(store module, names imported from it) of each import statement under ``node``."""
    out: list[tuple[str, list[str]]] = []
    for n in ast.walk(node):
        if isinstance(n, ast.Import):
            out += [(a.name.split(".")[2], []) for a in n.names
                    if a.name.startswith("mltrace_otel.store.")]
        elif isinstance(n, ast.ImportFrom) and n.module:
            names = [a.name for a in n.names]
            if n.module == "mltrace_otel.store":
                out += [(a, []) for a in names if a in modules]
            elif n.module.startswith("mltrace_otel.store."):
                out.append((n.module.split(".")[2], names))
    return out


def _modules(folder: Path) -> dict[str, ast.Module]:
    return {p.stem: ast.parse(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.py"))
            if p.stem != "__init__"}


def import_graph(folder: Path) -> dict[str, set[str]]:
    """``{module: store modules it imports anywhere}`` for the ``.py`` files of ``folder``."""
    trees = _modules(folder)
    names = frozenset(trees)
    return {m: {t for t, _ in _store_imports(tree, names)} - {m} for m, tree in trees.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle (``[a, b, ..., a]``), or [] when the graph has none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> list[str]:
        state[m] = 1
        path.append(m)
        for t in sorted(graph.get(m, ())):
            if state.get(t) == 1:
                return path[path.index(t):] + [t]
            if t not in state and (found := visit(t)):
                return found
        path.pop()
        state[m] = 2
        return []

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return []


def function_imports(folder: Path, module: str) -> list[str]:
    """Store modules ``module`` imports inside a function (``line: module``)."""
    trees = _modules(folder)
    names = frozenset(trees)
    out = []
    for n in ast.walk(trees[module]):
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for sub in ast.walk(n):
                if isinstance(sub, (ast.Import, ast.ImportFrom)):
                    out += [f"{sub.lineno}: {t}" for t, _ in _store_imports(sub, names)]
    return sorted(set(out))


def private_uses(folder: Path, module: str) -> list[str]:
    """Private names of other store modules that ``module`` imports or reads (``line: name``)."""
    trees = _modules(folder)
    names = frozenset(trees)
    tree = trees[module]
    aliases: set[str] = set()
    out = []
    for n in ast.walk(tree):
        if isinstance(n, ast.ImportFrom) and n.module == "mltrace_otel.store":
            aliases |= {a.asname or a.name for a in n.names if a.name in names}
        elif isinstance(n, ast.ImportFrom) and n.module and n.module.startswith("mltrace_otel.store."):
            out += [f"{n.lineno}: {n.module}.{a.name}" for a in n.names if a.name.startswith("_")]
        elif isinstance(n, ast.Import):
            aliases |= {a.asname for a in n.names if a.asname and a.name.startswith("mltrace_otel.store.")}
    for n in ast.walk(tree):
        if (isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id in aliases
                and n.attr.startswith("_") and not n.attr.startswith("__")):
            out.append(f"{n.lineno}: {n.value.id}.{n.attr}")
    return out


def test_the_store_package_has_no_import_cycle() -> None:
    cycle = find_cycle(import_graph(STORE))
    assert not cycle, "store modules import each other in a circle: " + " -> ".join(cycle)


def test_query_modules_import_store_modules_at_the_top_only() -> None:
    found = {m: f for m in sorted(QUERY_MODULES) if (f := function_imports(STORE, m))}
    assert not found, f"in-function imports of store modules: {found}"


def test_query_modules_reach_the_store_only_through_the_protocols() -> None:
    graph = import_graph(STORE)
    outside = {m: sorted(graph[m] - QUERY_MODULES) for m in sorted(QUERY_MODULES)
               if graph[m] - QUERY_MODULES}
    assert not outside, f"query modules importing connection or ingest modules: {outside}"


def test_query_modules_use_no_private_name_of_another_module() -> None:
    found = {m: p for m in sorted(QUERY_MODULES) if (p := private_uses(STORE, m))}
    assert not found, f"private names used across modules: {found}"


def test_the_store_has_every_member_of_the_protocols(store) -> None:
    """Store satisfies every protocol structurally: each member, with the protocol's parameters
    in order (a Store method may add optional keyword-only ones)."""
    for proto in (Connection, SchemaConnection, IngestConnection, SpanSink):
        for name, member in vars(proto).items():
            if name.startswith("_"):
                continue
            assert hasattr(store, name), f"Store lacks {proto.__name__}.{name}"
            if inspect.isfunction(member):
                want = [(p.name, p.default) for p in inspect.signature(member).parameters.values()]
                params = list(inspect.signature(getattr(type(store), name)).parameters.values())
                have = [(p.name, p.default) for p in params[:len(want)]]
                extra = params[len(want):]
                assert have == want, f"Store.{name}{have} is not {proto.__name__}.{name}{want}"
                assert all(p.kind is p.KEYWORD_ONLY and p.default is not p.empty for p in extra), name
