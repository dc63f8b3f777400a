"""The lineage graph: a layered layout of a trace or impact walk, drawn as a plotly figure
(a plain dict).

Layers come from the edges (longest path from the sources, so every edge points right, even when
the walk reached a run by a shorter path), and each layer is ordered by the barycenter of its
neighbours to keep crossings few. Each run appears once; failed runs are red, stale runs have an
orange ring (``⚠`` after the name: a direct cause; ``↑⚠``: only staleness inherited from upstream).
Each edge is labelled with the pointers it carries and the version read (short form), and the
walk's output has a node of its own. Each node's ``customdata`` is its run id, which the app
turns into the run's card on click (an edge label or the output node: a panel of pointers).
Imports :mod:`mltrace_otel.store.models` only (the figure is plain data).
"""

from __future__ import annotations

from collections import defaultdict, deque

from mltrace_otel.store.models import Lineage, Run

_ARROWS_MAX_EDGES = 300
_EDGE = "#8a94a6"


def layered_layout(lineage: Lineage) -> dict[str, tuple[float, float]]:
    """(x, y) of each run: x = layer (sources at 0), y = position within the layer."""
    ids = [n.run.id for n in lineage.nodes]
    known = set(ids)
    edges = {(e.producer, e.consumer) for e in lineage.edges
             if e.producer in known and e.consumer in known and e.producer != e.consumer}
    preds: dict[str, list[str]] = defaultdict(list)
    succs: dict[str, list[str]] = defaultdict(list)
    for p, c in edges:
        preds[c].append(p)
        succs[p].append(c)
    indeg = {i: len(preds[i]) for i in ids}
    layer = {i: 0 for i in ids}
    queue = deque(i for i in ids if indeg[i] == 0)
    seen = 0
    while queue:
        n = queue.popleft()
        seen += 1
        for c in succs[n]:
            layer[c] = max(layer[c], layer[n] + 1)
            indeg[c] -= 1
            if indeg[c] == 0:
                queue.append(c)
    if seen < len(ids):  # a cycle (equal timestamps): fall back on the walk's own depths
        depth = {n.run.id: n.depth for n in lineage.nodes}
        top = max(depth.values(), default=0)
        for i in ids:
            layer[i] = top - depth[i] if lineage.direction == "trace" else depth[i]
    layers: dict[int, list[str]] = defaultdict(list)
    comp = {n.run.id: n.run.component for n in lineage.nodes}
    for i in ids:
        layers[layer[i]].append(i)
    for members in layers.values():
        members.sort(key=lambda i: (comp[i], i))
    order = sorted(layers)
    pos = {i: float(k) for members in layers.values() for k, i in enumerate(members)}
    for sweep in range(4):  # barycenter sweeps, forwards then backwards
        seq = order[1:] if sweep % 2 == 0 else list(reversed(order[:-1]))
        nbrs = preds if sweep % 2 == 0 else succs
        for li in seq:
            members = layers[li]
            bary = {}
            for i in members:
                ns = [pos[n] for n in nbrs[i]]
                bary[i] = sum(ns) / len(ns) if ns else pos[i]
            members.sort(key=lambda i: (bary[i], pos[i]))
            for k, i in enumerate(members):
                pos[i] = float(k)
    out: dict[str, tuple[float, float]] = {}
    for li, members in layers.items():
        mid = (len(members) - 1) / 2
        for k, i in enumerate(members):
            out[i] = (float(li), mid - k)
    return out


def _hover(run: Run) -> str:
    lines = [run.component, f"run {run.id}", run.start.strftime("%Y-%m-%d %H:%M:%S UTC"),
             "FAILED" if run.failed else "OK"]
    lines += [f"stale: {m}" for m in run.stale[:3]]
    if run.failed:
        lines.append(f"failed: {run.failure}")
    # plotly renders hover text as HTML-ish markup: keep store strings literal
    return "<br>".join(s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
                       for s in lines)


def _stale_mark(run: Run) -> str:
    if not run.stale:
        return ""
    return "  ↑⚠" if run.stale_inherited_only else "  ⚠"


def _label(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_EDGE_LABEL_MAX = 28


def _short(name: str) -> str:
    """A long pointer name with its middle left out (the hover has it whole)."""
    if len(name) <= _EDGE_LABEL_MAX:
        return name
    keep = _EDGE_LABEL_MAX - 1
    return name[: keep // 2] + "…" + name[len(name) - (keep - keep // 2):]


def _edge_name(pointer: str, version: str, short: bool) -> str:
    name = _short(pointer) if short else pointer
    return f"{name} @{version[:8]}" if version else name


def output_node(lineage: Lineage, xy: dict[str, tuple[float, float]]
                ) -> tuple[str, tuple[float, float], list[tuple[str, str]]] | None:
    """The walk's own output as a node: after its producer in a trace, before its readers in an
    impact; (name, (x, y), [(run id, version)]) or None when the walk started from a run."""
    ids = set(xy)
    root = lineage.root
    hexish = 4 <= len(root) <= 16 and all(c in "0123456789abcdef" for c in root.lower())
    if not lineage.nodes or root in ids or hexish and any(i.startswith(root.lower()) for i in ids):
        return None  # the walk started from a run
    first = [n.run for n in lineage.nodes if n.depth == 0 and n.run.id in xy]
    if not first:
        return None
    trace = lineage.direction == "trace"
    x = (max if trace else min)(xy[r.id][0] for r in first) + (1.0 if trace else -1.0)
    y = sum(xy[r.id][1] for r in first) / len(first)
    links = []
    for r in first:
        ptrs = r.outputs if trace else r.inputs
        links.append((r.id, next((p.version for p in ptrs if p.name == lineage.root), "")))
    return lineage.root, (x, y), links


def lineage_figure(lineage: Lineage) -> dict:
    """The interactive DAG of a lineage walk, as a plotly figure dict (built as plain data:
    plotly's object validation would cost more than the layout itself on big walks).

    Each edge is labelled with the pointers it carries (long names shortened in the middle,
    the version read in short form when known); the walk's output is a node of its own (a
    diamond). A click on a run gives its id as the point's customdata; on an edge label,
    ``["edge", producer, consumer, [pointer, ...]]``; on the output node, ``["output", name]``."""
    xy = layered_layout(lineage)
    runs = {n.run.id: n.run for n in lineage.nodes}
    ex: list[float | None] = []
    ey: list[float | None] = []
    mx: list[float] = []
    my: list[float] = []
    mtext: list[str] = []
    mlabel: list[str] = []
    mdata: list[list] = []
    pairs: dict[tuple[str, str], dict[str, str]] = defaultdict(dict)
    for e in lineage.edges:
        if e.producer in xy and e.consumer in xy and e.producer != e.consumer:
            pairs[(e.producer, e.consumer)].setdefault(e.pointer, e.version)
    out = output_node(lineage, xy)
    coords = dict(xy)
    if out is not None:
        name, (ox, oy), links = out
        coords["\0output"] = (ox, oy)
        for rid, version in links:
            key = (rid, "\0output") if lineage.direction == "trace" else ("\0output", rid)
            pairs[key].setdefault(name, version)
    for (p, c), names in pairs.items():
        (x0, y0), (x1, y1) = coords[p], coords[c]
        ex += [x0, x1, None]
        ey += [y0, y1, None]
        mx.append(x0 + (x1 - x0) * 0.5)
        my.append(y0 + (y1 - y0) * 0.5)
        ordered = sorted(names)
        mtext.append("<br>".join(_label(_edge_name(n, names[n], False)) for n in ordered))
        mlabel.append("<br>".join(_label(_edge_name(n, names[n], True)) for n in ordered))
        mdata.append(["edge", p if p in runs else "", c if c in runs else "", ordered])
    data: list[dict] = [
        {"type": "scatter", "x": ex, "y": ey, "mode": "lines", "hoverinfo": "skip", "showlegend": False,
         "line": {"color": _EDGE, "width": 1.5}},
        {"type": "scatter", "x": mx, "y": my, "mode": "markers", "hovertext": mtext, "hoverinfo": "text",
         "customdata": mdata, "marker": {"size": 8, "color": _EDGE}, "name": "pointer",
         "showlegend": False},
        # the labels, under the dots (a click within plotly's hover distance of the dot picks it)
        {"type": "scatter", "x": mx, "y": my, "mode": "text", "text": mlabel, "hovertext": mtext,
         "hoverinfo": "text", "textposition": "bottom center", "customdata": mdata,
         "textfont": {"size": 10, "color": _EDGE}, "name": "pointer names", "showlegend": False},
    ]
    arrows = []
    if len(pairs) <= _ARROWS_MAX_EDGES:
        for p, c in pairs:
            (x0, y0), (x1, y1) = coords[p], coords[c]
            arrows.append({"x": x0 + (x1 - x0) * 0.8, "y": y0 + (y1 - y0) * 0.8,
                           "ax": x0 + (x1 - x0) * 0.7, "ay": y0 + (y1 - y0) * 0.7,
                           "xref": "x", "yref": "y", "axref": "x", "ayref": "y", "text": "",
                           "showarrow": True, "arrowhead": 2, "arrowsize": 1.2, "arrowwidth": 1.5,
                           "arrowcolor": _EDGE})
    groups = (("ok", "#2e9e5b", lambda r: not r.failed), ("failed", "#d64545", lambda r: r.failed))
    for name, color, pick in groups:
        ids = [i for i, r in runs.items() if pick(r)]
        if not ids:
            continue
        data.append({
            "type": "scatter", "x": [xy[i][0] for i in ids], "y": [xy[i][1] for i in ids],
            "mode": "markers+text", "name": name, "customdata": ids,
            "hovertext": [_hover(runs[i]) for i in ids], "hoverinfo": "text",
            "text": [_label(runs[i].component) + _stale_mark(runs[i]) for i in ids],
            "textposition": "top center",
            "marker": {"size": 22, "color": color,
                       "line": {"color": ["#f0a020" if runs[i].stale else "#ffffff" for i in ids],
                                "width": [5 if runs[i].stale else 1 for i in ids]}},
        })
    if out is not None:
        name, (ox, oy), _links = out
        data.append({"type": "scatter", "x": [ox], "y": [oy], "mode": "markers+text", "name": "output",
                     "customdata": [["output", name]], "text": [_label(_short(name))],
                     "hovertext": [_label(name)], "hoverinfo": "text", "textposition": "top center",
                     "marker": {"size": 20, "symbol": "diamond", "color": "#3b7dd8",
                                "line": {"color": "#ffffff", "width": 1}}})
    if any(r.stale for r in runs.values()):  # legend entry for the stale ring
        data.append({"type": "scatter", "x": [None], "y": [None], "mode": "markers", "name": "stale",
                     "marker": {"size": 14, "color": "rgba(0,0,0,0)",
                                "line": {"color": "#f0a020", "width": 4}}})
    widest = max((sum(1 for v in xy.values() if v[0] == x) for x in {v[0] for v in xy.values()}),
                 default=1)
    ys = [v[1] for v in coords.values()] or [0.0]
    xs = [v[0] for v in coords.values()] or [0.0]
    layout = {
        "height": min(1400, max(340, 90 * widest + 120)), "margin": {"l": 20, "r": 20, "t": 40, "b": 20},
        # room above the top labels and below the bottom edge labels; the legend sits above the plot
        "xaxis": {"visible": False, "range": [min(xs) - 0.5, max(xs) + 0.5]},
        "yaxis": {"visible": False, "range": [min(ys) - 0.7, max(ys) + 0.7]},
        "clickmode": "event", "paper_bgcolor": "rgba(0,0,0,0)", "plot_bgcolor": "rgba(0,0,0,0)",
        "font": {"color": "#7f8a9a"},
        "legend": {"orientation": "h", "x": 0, "y": 1.0, "yanchor": "bottom"}, "hovermode": "closest",
        "dragmode": "pan", "annotations": arrows,
    }
    return {"data": data, "layout": layout}
