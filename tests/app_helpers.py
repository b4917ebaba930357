"""Helpers of the AppTest page tests (Streamlit's testing API, no browser): open a page through app/main.py as
a browser following a link would, and read what it drew."""
from __future__ import annotations

import json
from pathlib import Path

from streamlit.testing.v1 import AppTest

MAIN = str(Path(__file__).resolve().parents[1] / "app" / "main.py")


def open_page(page: str, first_run: bool = True, timeout: float = 120, **params) -> AppTest:
    """`page` (its file under app/views/) with the URL query parameters `params`. `first_run`: the session
    draws the default page first and then navigates (the default page keeps only the keys it knows); else
    the link opens `page` directly. Fails on an exception on the page."""
    at = AppTest.from_file(MAIN, default_timeout=timeout)
    at.query_params.update(params)
    if first_run:
        at.run()
    at.switch_page(f"views/{page}.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def chart(at: AppTest, name: str) -> dict:
    """The JSON spec of the plotly figure the page showed as `name` (app.common.show)."""
    for c in at.get("plotly_chart"):
        if c.proto.id.endswith(f"fig_{name}"):
            return json.loads(c.proto.spec)
    raise AssertionError(f"no chart {name}: {[c.proto.id[-30:] for c in at.get('plotly_chart')]}")


def texts(at: AppTest, kind: str) -> list[str]:
    """The values of the page's elements of one kind: "error", "warning", "info", "markdown", "title"..."""
    return [e.value for e in getattr(at, kind)]
