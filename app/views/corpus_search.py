"""Corpus search (exBERT): for one token of a query text, the tokens of a corpus whose hidden states at a layer
are nearest, with their contexts.

The corpus index (every layer's hidden states of up to `tokens` tokens of the chosen text set) is built once
per (model, data, size) and kept under runs/search/; later searches read it from disk (memory-mapped).
Keys: `data`, `tokens` (index size), `query`, `token` (the query token), `layer` (0 = embeddings), `metric`,
`hits` (plus `model`).
"""
from __future__ import annotations

import streamlit as st

from app import common, state
from app.figures import beyond as FB
from model.errors import LmscopeError
from model.inspect import InputError, encode

DATA = ("english", "toyworld", "pydoc", "wordnet")
DEFAULT_QUERY = "the dogs near the cat run quickly ."


@st.cache_resource(max_entries=4, show_spinner=False)
def _index(_loaded, model_key: tuple, data: str, max_tokens: int):
    """The opened index (built first if it is not under runs/search/ yet); shared read-only by sessions.
    `_loaded` is the page's model, which `model_key` names (Streamlit does not hash it)."""
    from model import textsets
    from model.corpus_search import build_index

    return build_index(_loaded, textsets.builtin(data), max_tokens=max_tokens)


def render() -> None:
    st.title("Corpus search")
    from model.projector import unavailable

    loaded = common.model_picker(prefer=common.prefers("attention"), need=unavailable)
    if loaded is None:
        return
    from model.corpus_search import METRICS, query_vector, search

    query = state.text_input("Query text", "query", DEFAULT_QUERY)
    try:
        tokens = encode(loaded, query).tokens
    except InputError as e:
        st.error(str(e))
        return
    real = [i for i, t in enumerate(tokens) if not t.special]
    c = st.columns([2, 2, 3, 2, 1])
    with c[0]:
        data = state.selectbox("Corpus", "data", DATA, "english")
    with c[1]:
        size = state.number_input("Corpus tokens (at most)", "tokens", 100, 200_000, 20_000, step=1000)
    with c[2]:
        token = state.selectbox("Query token", "token", real, real[min(1, len(real) - 1)] if real else None,
                                format_func=lambda i: f"{i}: {tokens[i].text}")
    with c[3]:
        layer = state.slider("Layer (0 = embeddings)", "layer", 0, loaded.backend.num_layers, loaded.backend.num_layers)
    with c[4]:
        metric = state.radio("Metric", "metric", METRICS, "cosine", horizontal=False)
    k = state.slider("Nearest tokens", "hits", 1, 50, 10)
    if token is None:
        return
    try:
        with st.spinner("Opening the corpus index (built once per model, corpus and size; kept under runs/search/)…"):
            index = _index(loaded, (loaded.info.path, common.load_dtype()), data, int(size))
        hits = search(index, query_vector(loaded, query, int(token), int(layer)), int(layer), k=int(k), metric=metric)
    except LmscopeError as e:  # TextSetError, InputError
        st.error(str(e))
        return
    st.caption(f"{len(index):,} tokens of {data} indexed at {len(index.layers)} layers ({index.path.name}); "
               f"{'cosine similarity' if metric == 'cosine' else 'L2 distance'}, exact.")
    st.markdown(f"**Tokens nearest to `{tokens[token].text}` at layer {layer}:**")
    table = FB.neighbours_table([h.to_json() for h in hits])
    st.dataframe(table, hide_index=True)
    st.download_button("Download hits (CSV)", table.to_csv(index=False), file_name="corpus-search.csv",
                       mime="text/csv", key="dl_search_csv", on_click="ignore")
    if hits:
        st.page_link("views/attention.py", label="Open the nearest hit's text on the Attention page",
                     query_params={"model": loaded.info.name, "text": index.texts[hits[0].text_index],
                                   "token": str(hits[0].position)})


render()
