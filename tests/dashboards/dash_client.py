"""Drive the app's page callback over HTTP without a browser (Flask test client); tests and bench."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit


class PageClient:
    """Renders pages the way the browser asks for them: POST /_dash-update-component."""

    def __init__(self, app: Any, headers: dict[str, str] | None = None) -> None:
        self.client = app.server.test_client()
        self.headers = headers or {}
        deps = self.client.get("/_dash-dependencies", headers=self.headers).get_json()
        self.page_dep = next(d for d in deps if "page.children" in d["output"])
        self.graph_dep = next(d for d in deps if d["output"].startswith("selected-card"))

    def _post(self, payload: dict[str, Any]) -> dict[str, Any]:
        r = self.client.post("/_dash-update-component", json=payload, headers=self.headers)
        assert r.status_code == 200, r.status_code
        return r.get_json()

    def page(self, url: str) -> dict[str, Any]:
        """The page callback's response for a URL: {'page': children, 'cmd': bar text}."""
        parts = urlsplit(url)
        resp = self._post({
            "output": self.page_dep["output"],
            "outputs": [{"id": "page", "property": "children"}, {"id": "cmd", "property": "value"},
                        {"id": "doc-title", "property": "data"}],
            "inputs": [{"id": "url", "property": "pathname", "value": parts.path},
                       {"id": "url", "property": "search", "value": f"?{parts.query}" if parts.query else ""},
                       {"id": "refresh", "property": "data", "value": 0}],
            "changedPropIds": ["url.pathname"], "state": [],
        })
        return {"page": resp["response"]["page"]["children"], "cmd": resp["response"]["cmd"]["value"]}

    def click_node(self, run_id: str) -> Any:
        """The graph-click callback's response (the selected card) for a run id."""
        resp = self._post({
            "output": self.graph_dep["output"],
            "outputs": {"id": "selected-card", "property": "children"},
            "inputs": [{"id": "lineage-graph", "property": "clickData",
                        "value": {"points": [{"customdata": run_id}]}}],
            "changedPropIds": ["lineage-graph.clickData"], "state": [],
        })
        return resp["response"]["selected-card"]["children"]


def texts(tree: Any) -> list[str]:
    """Every string in a rendered component tree (what the page would show, plus props)."""
    out: list[str] = []

    def walk(n: Any) -> None:
        if isinstance(n, str):
            out.append(n)
        elif isinstance(n, list):
            for x in n:
                walk(x)
        elif isinstance(n, dict):
            props = n.get("props", {})
            walk(props.get("children"))
            for k in ("figure",):
                if k in props:
                    out.append(json.dumps(props[k]))

    walk(tree)
    return out
