"""Benchmarks of the views beyond attention; each figure is ours against a baseline measured in the same run.

    python -m bench.beyond [--full]
    lmscope bench [--full]            # every benchmark (bench/run.py)

a. projector, browser: new tab on /projector with ~5,000 toy-world tokens (PCA, states cached by a first
   visit) -> every point drawn; and the websocket bytes it received. Baseline: a plain Streamlit script
   drawing 5,000 random points with hover texts in the same kind of plotly scatter (SVG; same flags).
b. corpus search: one query (the query text's forward pass + exact top-10 over the index) on a 100k-token
   index of the pydoc corpus (demo BERT's last layer; --full: 200k); baseline: brute force, every distance
   computed and fully sorted (numpy) on the same matrix. Index build time reported.

Browser figures are skipped with one line when chromium or playwright is missing.
"""
from __future__ import annotations

import statistics
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

import numpy as np

from bench.browser import (Browser, exception_shown, hello_argv, lmscope_argv, load_note, demo_models, serve,
                           unavailable)
from bench.engine import Figure

POINTS = 5_000
SCATTER_APP = """import numpy as np, plotly.graph_objects as go, streamlit as st
rng = np.random.default_rng(0)
xy = rng.normal(size=({n}, 2))
hover = [f"token {{i}}: some context around the token [here] and after it" for i in range({n})]
st.title("scatter")
st.plotly_chart(go.Figure(go.Scatter(x=xy[:, 0], y=xy[:, 1], mode="markers", text=hover,
                                       hovertemplate="%{{text}}<extra></extra>")))
"""
# A plotly figure on the page has at least n scatter points drawn (SVG markers).
POINTS_DRAWN = """(n) => [...document.querySelectorAll('.js-plotly-plot')].some(d =>
  d.querySelectorAll('.scatterlayer .point').length >= n)"""
COUNT = """() => Math.max(0, ...[...document.querySelectorAll('.js-plotly-plot')].map(d =>
  d.querySelectorAll('.scatterlayer .point').length))"""


def _visit(ctx, url: str, n: int, timeout_ms: int = 600_000) -> tuple[float, int, int]:
    """(seconds to every point drawn, websocket bytes received, points) of a new tab on `url`."""
    page = ctx.new_page()
    received = [0]
    page.on("websocket", lambda ws: ws.on("framereceived", lambda p: received.__setitem__(0, received[0] + len(p))))
    t = time.perf_counter()
    page.goto(url)
    page.wait_for_function(POINTS_DRAWN, arg=n, polling="raf", timeout=timeout_ms)
    elapsed = time.perf_counter() - t
    page.wait_for_function("() => document.querySelector('[data-testid=stApp][data-test-script-state=notRunning]')",
                           polling=50, timeout=60_000)
    time.sleep(0.3)  # frames already in flight
    points = int(page.evaluate(COUNT))
    if exception_shown(page):
        raise RuntimeError(f"{url} showed an exception")
    page.close()
    return elapsed, received[0], points


def bench_projector(br: Browser, demo: Path, note: str, tmp: Path) -> list[Figure]:
    script = tmp / "scatter.py"
    script.write_text(SCATTER_APP.format(n=POINTS))
    ctx = br.context()
    with serve(lambda p: hello_argv(script, p)) as (url, _):
        _visit(ctx, url, POINTS)  # plotly.js into the HTTP cache, like the warm visit below
        base_s, base_bytes, _ = _visit(ctx, url, POINTS)
    ctx.close()

    env = {"LMSCOPE_DEMO_MODELS": str(demo), "LMSCOPE_RUNS": str(tmp / "runs")}
    ctx = br.context()
    with serve(lmscope_argv, env) as (url, _):
        q = urllib.parse.urlencode({"model": "demo/bert", "data": "toyworld", "layer": 2, "proj": "pca",
                                    "tokens": POINTS, "color": "label"})
        cold_s, _, _ = _visit(ctx, f"{url}/projector?{q}", POINTS)  # model load + states + PCA, then cached
        ours_s, ours_bytes, points = _visit(ctx, f"{url}/projector?{q}", POINTS)
    ctx.close()
    return [
        Figure(f"projector {points} tokens drawn (browser)", ours_s, base_s, "s", "<= 5 s", ours_s <= 5.0,
               ours_does=f"Projector page in a new tab until every point is drawn (states and PCA cached by a first "
               f"visit, which took {cold_s:.1f} s with the model load)",
               baseline_does=f"plain Streamlit script drawing {POINTS} random points in a plotly scatter",
               note=load_note() + (f"; {note}" if note else "")),
        Figure(f"projector {points} tokens ws bytes", ours_bytes / 1e6, base_bytes / 1e6, "MB", "<= 4 MB",
               ours_bytes <= 4e6, ours_does="websocket frames received by that tab (points, hover contexts, page)",
               baseline_does="the same for the plain scatter script"),
    ]


def bench_search(tmp: Path, tokens: int = 100_000, queries: int = 20) -> list[Figure]:
    from bench.browser import ROOT
    from model import textsets
    from model.corpus_search import build_index, query_vector, search
    from model.load import load_model

    demo = ROOT / "assets" / "models" / "bert"
    if not (demo / "config.json").is_file():
        print(f"{'bench.beyond search':<44} skipped: no demo BERT in assets/models", flush=True)
        return []
    m = load_model(demo)
    layer = m.backend.num_layers
    t = time.perf_counter()
    index = build_index(m, textsets.builtin("pydoc"), layers=[layer], max_tokens=tokens, root=tmp / "search")
    build_s = time.perf_counter() - t
    x = np.asarray(index.states(layer)[0])
    rng = np.random.default_rng(0)
    rows = rng.choice(len(index), queries, replace=False)
    ours, base, agree = [], [], 0
    for r in rows:
        text, pos = index.texts[index.text_index[r]], int(index.position[r])
        t = time.perf_counter()
        hits = search(index, query_vector(m, text, pos, layer), layer, k=10, metric="l2")
        ours.append(time.perf_counter() - t)
        q = x[r]
        t = time.perf_counter()
        brute = np.argsort(np.linalg.norm(x - q, axis=1), kind="stable")[:10]  # every distance, fully sorted
        base.append(time.perf_counter() - t)
        agree += [h.row for h in hits] == list(brute)
    o, b = statistics.median(ours), statistics.median(base)
    return [Figure(f"corpus search, {len(index):,}-token index", o * 1000, b * 1000, "ms", "< 1000 ms", o < 1.0,
                   ours_does=f"median of {queries} queries: query forward + exact L2 top-10, index memory-mapped "
                   "from disk",
                   baseline_does="brute-force distances + full sort of the stored states",
                   note=f"same top-10 in {agree}/{queries} (the query's own state is recomputed, so ties aside they "
                   f"agree); index of demo BERT layer {layer}, {x.nbytes / 1e6:.0f} MB, built in {build_s:.0f} s; "
                   f"{load_note()}")]


def run(full: bool = False) -> list[Figure]:
    figs: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="lmscope-bench-beyond-") as d:
        tmp = Path(d)
        figs += bench_search(tmp, tokens=200_000 if full else 100_000)
        why = unavailable()
        if why:
            print(f"{'bench.beyond projector':<44} skipped: {why}", flush=True)
            return figs
        from playwright.sync_api import sync_playwright

        with sync_playwright() as pw:
            demo, note = demo_models(tmp)
            br = Browser(pw)
            try:
                figs += bench_projector(br, demo, note, tmp)
            finally:
                br.close()
            if br.outside:
                raise RuntimeError(f"the pages tried to reach other hosts: {sorted(set(br.outside))[:5]}")
    return figs


if __name__ == "__main__":
    for f in run(full="--full" in sys.argv):
        print(f.line(), flush=True)
