"""lmscope's Streamlit entry point: the frame (navigation, sidebar, lecture mode, URL sync) around the pages.

`lmscope app` runs this file. Each page is its own script under app/views/ with its own URL path
(`/attention?model=demo/bert&text=...&layer=3&head=7`); `app/state.py` lists every query parameter.
Pages whose file is not there (yet) are left out of the navigation instead of failing.
"""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from app import common, frame, state

# Not "pages/": Streamlit would auto-discover that folder (legacy multipage mode) and serve a page's URL
# by running its script alone, outside this frame.
PAGES_DIR = Path(__file__).resolve().parent / "views"
# (file, title); the first is the default page. Each page's URL path is its file's stem (`/masked_lm`).
PAGES = [
    ("models.py", "Models"),
    ("tokenization.py", "Tokenization"),
    ("attention.py", "Attention"),
    ("masked_lm.py", "Masked LM"),
    ("generation.py", "Generation"),
    ("compare.py", "Compare MLM vs causal"),
    ("probes.py", "Agreement probes"),
    ("neurons.py", "Neurons"),
    ("projector.py", "Projector"),
    ("corpus_search.py", "Corpus search"),
    ("train.py", "Train"),
    ("finetune.py", "Fine-tune"),
    ("export.py", "Export"),
]
# Pages whose scripts import no torch/transformers (url paths; "" is the hidden home page). Every other page
# waits for the engine (common.engine) before its script runs: on a fresh server `lmscope app`'s warm-up
# thread is still importing it while the first page draws, and a module half imported by another thread
# fails when read (app/serve.py).
ENGINE_FREE = {"", "models"}


def pages() -> list:
    found = [(f, t) for f, t in PAGES if (PAGES_DIR / f).is_file()]
    # No icons: Streamlit fetches a page's material icon from a font CDN to use it as the favicon.
    views = [st.Page(str(PAGES_DIR / f), title=t, url_path=Path(f).stem) for f, t in found]
    if not views:
        return views

    def home() -> None:
        """`/` opens the first page at its own path with the same query string: Streamlit serves a default
        page only at `/`, so a visible default would make `/models` a "page not found"."""
        params = st.query_params.to_dict()
        state.keep(*params)  # so that publish(), after this run, hands the query string on instead of clearing it
        st.switch_page(views[0], query_params=params)

    return [st.Page(home, title="lmscope", url_path="home", default=True, visibility="hidden"), *views]


st.set_page_config(page_title="lmscope", layout="wide")
state.begin()
page = st.navigation(pages(), position="sidebar")
common.set_page(page.url_path)  # the page's first-screen model and text (common.PAGE_MODELS)
try:
    if page.url_path not in ENGINE_FREE:
        common.engine()
    page.run()  # draws the page; its model picker goes to the sidebar under the navigation
finally:
    with st.sidebar:  # drawn after the page so they sit at the bottom of the sidebar
        st.divider()
        frame.lecture_mode()
        frame.image_format_picker()
    state.publish()
    frame.sweep_uploads()  # upload folders of sessions that have ended
