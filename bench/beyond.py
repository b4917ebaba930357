"""Benchmarks of the views beyond attention; each figure is ours against a baseline measured in the same run.

    python -m bench.beyond [--full] [--only stages|projector|search] [--points N] [--search-tokens N]
    lmscope bench [--full]            # every benchmark (bench/run.py)

a. projector stages, no browser (INFO): where a first draw of --points toy-world tokens (demo BERT, last
   layer) spends its time: text set, hidden states, PCA, figure build and its JSON; baseline: the same
   figure work for as many random points in a plain plotly scatter (what the browser baseline's server does).
   UMAP: a fresh process's first UMAP (import + numba compile + fit) and a warm one, against PCA.
b. projector, browser: on a running `lmscope app` whose model is loaded (a 100-token visit first), a new tab
   on /projector with --points toy-world tokens -> every point drawn (states + PCA computed: the first
   draw), then another new tab (cached: the redraw), the websocket bytes of that tab, and a tab on UMAP
   after the first visit started the UMAP warm-up. Baseline: a plain Streamlit script drawing as many
   random points with hover texts in the same kind of plotly scatter (SVG; same flags).
c. corpus search: one query (the query text's forward pass + exact top-10) on a --search-tokens index
   (default 100k, --full 200k) of WordNet sentences (`textsets.builtin("wordnet")`) by the en-BERT demo model
   at its last layer; baseline: brute force, every distance computed and fully sorted (numpy) on the same
   matrix. Index size and build time reported.

Browser figures are skipped with one line when chromium or playwright is missing; the search with one line
when the en-BERT demo model or WordNet is missing.
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

import numpy as np

from bench.browser import (ROOT, Browser, demo_models, exception_shown, hello_argv, lmscope_argv, load_note, serve,
                           unavailable)
from bench.engine import Figure

POINTS = 5_000
SEARCH_TOKENS = 100_000
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
# (points drawn, points in the figure's data, its title) of the plot with the most points drawn.
COUNT = """() => [...document.querySelectorAll('.js-plotly-plot')].map(d => [
  d.querySelectorAll('.scatterlayer .point').length,
  (d._fullData || []).reduce((s, t) => s + (t._length || 0), 0),
  (d.querySelector('.gtitle') || {textContent: ''}).textContent]).sort((a, b) => b[0] - a[0])[0] || [0, 0, '']"""
# The UMAP warm-up's first run in a fresh process: import, compile, fit (python -c).
UMAP_CHILD = """import sys, time
import numpy as np
from model.projector import project
x = np.load(sys.argv[1]); t = time.perf_counter()
project(x, "umap"); print(time.perf_counter() - t)"""


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def _demo_bert() -> Path | None:
    p = ROOT / "assets" / "models" / "bert"
    return p if (p / "config.json").is_file() else None


def bench_stages(points: int = POINTS) -> list[Figure]:
    """a. The projector's first draw without the browser, stage by stage (INFO rows)."""
    import plotly.graph_objects as go
    import plotly.io as pio

    from app.figures.beyond import projection_figure
    from model import textsets
    from model.load import load_model
    from model.projector import project, token_states, warm_umap

    demo = _demo_bert()
    if demo is None:
        print(f"{'bench.beyond stages':<44} skipped: no demo BERT in assets/models", flush=True)
        return []
    m, load_s = _timed(lambda: load_model(demo))
    layer = m.backend.num_layers
    textsets.builtin.cache_clear()
    ts, set_s = _timed(lambda: textsets.builtin("toyworld"))
    states, states_s = _timed(lambda: token_states(m, ts, [layer], max_tokens=points))
    x = states.layer(layer)
    _, sklearn_s = _timed(lambda: __import__("sklearn.decomposition"))  # the first PCA of a process pays this
    xy, pca_s = _timed(lambda: project(x, "pca"))
    hover = [f"{t} ({lab}): {cx}" for t, lab, cx in zip(states.tokens, states.labels, states.contexts)]

    def ours_fig():
        fig = projection_figure(xy, states.labels, hover, "bench", "label", categorical=True)
        return len(pio.to_json(fig, validate=False))

    def base_fig():
        rng = np.random.default_rng(0)
        r = rng.normal(size=(len(x), 2))
        h = [f"token {i}: some context around the token [here] and after it" for i in range(len(x))]
        fig = go.Figure(go.Scatter(x=r[:, 0], y=r[:, 1], mode="markers", text=h, hovertemplate="%{text}<extra></extra>"))
        return len(pio.to_json(fig, validate=False))

    json_bytes, fig_s = _timed(ours_fig)
    base_bytes, base_s = _timed(base_fig)
    pca_s += sklearn_s
    ours = states_s + pca_s + fig_s
    figs = [Figure(f"projector compute, {len(x):,} tokens", ours, base_s, "s", "", None,
                   ours_does="hidden states (batched forwards) + PCA + the coloured figure built and serialised",
                   baseline_does="a plain plotly scatter of as many random points with hovers, built and serialised",
                   note=f"states {states_s:.2f} s, PCA {pca_s:.3f} s ({sklearn_s:.2f} s of it importing scikit-learn), figure {fig_s:.2f} s ({json_bytes / 1e6:.2f} MB "
                   f"JSON vs {base_bytes / 1e6:.2f} MB); text set {set_s:.2f} s, model load {load_s:.2f} s; "
                   f"{states.warnings[0] if states.warnings else 'not cut'}; {load_note()}")]
    with tempfile.TemporaryDirectory(prefix="lmscope-bench-umap-") as d:
        path = Path(d) / "x.npy"
        np.save(path, x)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        t = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", UMAP_CHILD, str(path)], cwd=ROOT, env=env, capture_output=True,
                             text=True, check=True)
        cold_s = time.perf_counter() - t
    inner_s = float(out.stdout.strip().splitlines()[-1])
    warm_umap().join()  # compile here, as the server's warm-up does off the request path
    _, warm_s = _timed(lambda: project(x, "umap"))
    figs.append(Figure(f"projector UMAP, first in a process, {len(x):,} tok", cold_s, pca_s, "s", "", None,
                       ours_does="a fresh process's first UMAP: interpreter, imports, numba compilation, fit",
                       baseline_does="PCA of the same matrix (the page's default)",
                       note=f"{inner_s:.1f} s of it after the imports (compilation + fit); {load_note()}"))
    figs.append(Figure(f"projector UMAP, kernels compiled, {len(x):,} tok", warm_s, pca_s, "s", "", None,
                       ours_does="UMAP of the same matrix once umap-learn's kernels are compiled (after the warm-up)",
                       baseline_does="PCA of the same matrix", note=load_note()))
    return figs


def _visit(ctx, url: str, n: int, timeout_ms: int = 600_000) -> tuple[float, int, tuple[int, int, str]]:
    """(seconds to n points drawn, websocket bytes received, (points drawn, points in the data, title)) of a
    new tab on `url`."""
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
    drawn, data, title = page.evaluate(COUNT)
    if exception_shown(page):
        raise RuntimeError(f"{url} showed an exception")
    page.close()
    return elapsed, received[0], (int(drawn), int(data), str(title))


def _count_note(count: tuple[int, int, str], points: int) -> str:
    drawn, data, title = count
    if drawn == data == points:
        return f"{drawn} points drawn = the {points} asked for"
    return f"{drawn} points drawn, {data} in the figure's data, {points} asked for; title {title!r}"


def bench_projector(br: Browser, demo: Path, note: str, tmp: Path, points: int = POINTS) -> list[Figure]:
    """b. The projector page in the browser: first draw, cached redraw, bytes, UMAP after the warm-up."""
    script = tmp / "scatter.py"
    script.write_text(SCATTER_APP.format(n=points))
    ctx = br.context()
    with serve(lambda p: hello_argv(script, p)) as (url, _):
        _visit(ctx, url, points)  # plotly.js into the HTTP cache, like the visits below
        base_s, base_bytes, _ = _visit(ctx, url, points)
    ctx.close()

    env = {"LMSCOPE_DEMO_MODELS": str(demo), "LMSCOPE_RUNS": str(tmp / "runs")}
    ctx = br.context()
    query = lambda **kw: urllib.parse.urlencode({"model": "demo/bert", "data": "toyworld", "layer": 2,  # noqa: E731
                                                  "color": "label", **kw})
    with serve(lmscope_argv, env) as (url, _):
        load_s, _, _ = _visit(ctx, f"{url}/projector?{query(proj='pca', tokens=100)}", 100)  # model load, plotly.js
        t_first = time.perf_counter()
        first_s, _, first_count = _visit(ctx, f"{url}/projector?{query(proj='pca', tokens=points)}", points)
        again_s, ours_bytes, count = _visit(ctx, f"{url}/projector?{query(proj='pca', tokens=points)}", points)
        since = time.perf_counter() - t_first
        umap_s, _, umap_count = _visit(ctx, f"{url}/projector?{query(proj='umap', tokens=points)}", points)
    ctx.close()
    counted = _count_note(first_count, points)
    return [
        Figure(f"projector first draw, {points} tok (browser)", first_s, base_s, "s", "<= 5 s", first_s <= 5.0,
               ours_does="new tab on /projector, model loaded, states + PCA computed -> every point drawn",
               baseline_does=f"plain Streamlit script drawing {points} random points in a plotly scatter",
               note=f"{counted}; the 100-token visit that loaded the model took {load_s:.1f} s; {load_note()}"
               + (f"; {note}" if note else "")),
        Figure(f"projector cached redraw, {points} tok (browser)", again_s, base_s, "s", "<= 5 s", again_s <= 5.0,
               ours_does="another new tab on the same URL (states and PCA cached for the server) -> points drawn",
               baseline_does="the same plain scatter script", note=f"{_count_note(count, points)}; {load_note()}"),
        Figure(f"projector {points} tok ws bytes", ours_bytes / 1e6, base_bytes / 1e6, "MB", "<= 4 MB",
               ours_bytes <= 4e6, ours_does="websocket frames received by that tab (points, hover contexts, page)",
               baseline_does="the same for the plain scatter script"),
        Figure(f"projector UMAP draw, {points} tok (browser)", umap_s, first_s, "s", "", None,
               ours_does=f"new tab with proj=umap, {since:.0f} s after the first visit started the UMAP warm-up "
               "-> points drawn",
               baseline_does="the first PCA draw above", note=f"{_count_note(umap_count, points)}; {load_note()}"),
    ]


def bench_search(tmp: Path, tokens: int = SEARCH_TOKENS, queries: int = 20) -> list[Figure]:
    """c. One query on a `tokens`-token WordNet index of the en-BERT demo model, against brute force."""
    from model import textsets
    from model.corpus_search import build_index, query_vector, search
    from model.load import load_model
    from model.textsets import TextSetError

    demo = ROOT / "assets" / "models" / "en-bert"
    if not (demo / "config.json").is_file():
        print(f"{'bench.beyond search':<44} skipped: no en-bert demo model in assets/models", flush=True)
        return []
    try:
        data = textsets.builtin("wordnet")
    except TextSetError as e:
        print(f"{'bench.beyond search':<44} skipped: {e}", flush=True)
        return []
    m = load_model(demo)
    layer = m.backend.num_layers
    index, build_s = _timed(lambda: build_index(m, data, layers=[layer], max_tokens=tokens, root=tmp / "search"))
    x = np.asarray(index.states(layer)[0])
    if len(index) < tokens:
        print(f"bench.beyond search: the WordNet set gives only {len(index):,} of {tokens:,} tokens", flush=True)
    rng = np.random.default_rng(0)
    rows = rng.choice(len(index), queries, replace=False)
    ours, alone, base, agree = [], [], [], 0
    for r in rows:
        text, pos = index.texts[index.text_index[r]], int(index.position[r])
        t = time.perf_counter()
        q = query_vector(m, text, pos, layer)
        t1 = time.perf_counter()
        hits = search(index, q, layer, k=10, metric="l2")
        t2 = time.perf_counter()
        ours.append(t2 - t), alone.append(t2 - t1)
        brute = np.argsort(np.linalg.norm(x - x[r], axis=1), kind="stable")[:10]  # every distance, fully sorted
        base.append(time.perf_counter() - t2)
        agree += [h.row for h in hits] == list(brute)
    o, b = statistics.median(ours), statistics.median(base)
    size = sum(f.stat().st_size for f in index.path.iterdir())
    return [Figure(f"corpus search, {len(index):,}-token index", o * 1000, b * 1000, "ms", "< 1000 ms", o < 1.0,
                   ours_does=f"median of {queries} queries: query forward + exact L2 top-10, index memory-mapped "
                   "from disk",
                   baseline_does="brute-force distances + full sort of the stored states",
                   note=f"search alone {statistics.median(alone) * 1000:.1f} ms; same top-10 in {agree}/{queries} (the "
                   f"query's own state is recomputed, so ties aside they agree); en-bert layer {layer}, "
                   f"{x.shape[1]} dims; index {size / 1e6:.0f} MB on disk ({x.nbytes / 1e6:.0f} MB of states), "
                   f"built in {build_s:.1f} s; {load_note()}")]


PARTS = ("stages", "projector", "search")


def run(full: bool = False, only: tuple[str, ...] = PARTS, points: int = POINTS,
        search_tokens: int | None = None) -> list[Figure]:
    figs: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="lmscope-bench-beyond-") as d:
        tmp = Path(d)
        if "search" in only:
            figs += bench_search(tmp, tokens=search_tokens or (200_000 if full else SEARCH_TOKENS))
        if "stages" in only:
            figs += bench_stages(points)
        if "projector" not in only:
            return figs
        why = unavailable()
        if why:
            print(f"{'bench.beyond projector':<44} skipped: {why}", flush=True)
            return figs
        from playwright.sync_api import sync_playwright

        with sync_playwright() as pw:
            demo, note = demo_models(tmp)
            br = Browser(pw)
            try:
                figs += bench_projector(br, demo, note, tmp, points)
            finally:
                br.close()
            if br.outside:
                raise RuntimeError(f"the pages tried to reach other hosts: {sorted(set(br.outside))[:5]}")
    return figs


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m bench.beyond", description=__doc__.split("\n\n")[0])
    p.add_argument("--full", action="store_true", help=f"a 200k-token search index (default {SEARCH_TOKENS:,})")
    p.add_argument("--only", choices=PARTS, action="append",
                   help="run only this part (repeatable): stages (no browser), projector (browser), search")
    p.add_argument("--points", type=int, default=POINTS, help=f"projector tokens (default {POINTS:,})")
    p.add_argument("--search-tokens", type=int, help="corpus search index size (default 100,000; --full 200,000)")
    a = p.parse_args(argv)
    for f in run(full=a.full, only=tuple(a.only or PARTS), points=a.points, search_tokens=a.search_tokens):
        print(f.line(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
