"""Projector: every token of a text collection as a point, from its hidden state at one layer (LIT's projector).

PCA (scikit-learn) or UMAP (umap-learn) of the states; colour by label (the toy world's word classes, the
English set's topics, an upload's labels), by token or by position; hover shows the token in its context;
click a point to open its text (and from there, on the Attention page). States and coordinates are cached
per (model, data, layer, size) for the whole server, so moving back to a layer is instant. The first visit
starts compiling umap-learn's kernels in the background (`model.projector.warm_umap`), so that choosing
UMAP later does not wait for them.
Keys: `data` (toyworld | english | pydoc | upload), `layer` (0 = embeddings), `proj` (pca | umap),
`color` (label | token | position), `tokens` (at most this many), `point` (the clicked token)
(plus `model`).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from app import common, state
from app.figures import beyond as FB
from app.figures.style import LECTURE_FONT
from model.errors import LmscopeError
from model.textsets import BUILTIN

DATA = (*BUILTIN, "upload")
COLORS = ("label", "token", "position")
MAX_POINTS = 20_000


@st.cache_data(max_entries=16, show_spinner=False)
def _states(_loaded, model_key: tuple, data: str, upload: bytes | None, layer: int, max_tokens: int):
    """TokenStates of one layer; cached per (model, data, layer, size) across sessions (`_loaded` is the
    page's model, which `model_key` names: Streamlit does not hash it, and no second copy is loaded)."""
    from model import textsets
    from model.projector import token_states

    ts = textsets.from_bytes("upload", upload) if data == "upload" else textsets.builtin(data)
    return token_states(_loaded, ts, [layer], max_tokens=max_tokens)


@st.cache_data(max_entries=16, show_spinner=False)
def _coords(_loaded, model_key: tuple, data: str, upload: bytes | None, layer: int, max_tokens: int,
            method: str) -> np.ndarray:
    from model.projector import project

    return project(_states(_loaded, model_key, data, upload, layer, max_tokens).layer(layer), method)


def _upload() -> bytes | None:
    f = st.file_uploader("Texts (UTF-8, one per line, optionally label<TAB>text)", type=["txt", "tsv"], key="proj_upload")
    if f is not None:
        st.session_state["proj_upload_bytes"] = f.getvalue()
    return st.session_state.get("proj_upload_bytes")


def render() -> None:
    st.title("Projector")
    from model.projector import unavailable

    loaded = common.model_picker(prefer=common.prefers("attention"), need=unavailable)
    if loaded is None:
        return
    c = st.columns([2, 3, 2, 2, 2])
    with c[0]:
        data = state.selectbox("Texts", "data", DATA, "english")
    with c[1]:
        layer = state.slider("Layer (0 = embeddings)", "layer", 0, loaded.backend.num_layers, loaded.backend.num_layers)
    with c[2]:
        method = state.radio("Projection", "proj", ("pca", "umap"), "pca")
    with c[3]:
        color = state.radio("Colour by", "color", COLORS, "label")
    with c[4]:
        max_tokens = state.number_input("Tokens (at most)", "tokens", 100, MAX_POINTS, 2_000, step=500)
    upload = _upload() if data == "upload" else None
    if data == "upload" and upload is None:
        st.info("Upload a text file: one text per line, optionally `label<TAB>text`.")
        return
    from model.projector import umap_ready, warm_umap

    first = method == "umap" and not umap_ready()
    try:
        with st.spinner(f"Hidden states at layer {layer}, then {method.upper()}" + (
                " (the server's first UMAP compiles umap-learn's kernels first)…" if first else "…")):
            key = (loaded.info.path, common.load_dtype())
            ts = _states(loaded, key, data, upload, int(layer), int(max_tokens))
            xy = _coords(loaded, key, data, upload, int(layer), int(max_tokens), method)
    except LmscopeError as e:  # TextSetError (a bad upload), InputError, Unavailable
        st.error(str(e))
        return
    for w in ts.warnings[:3]:
        st.caption(w)
    values = {"label": ts.labels, "token": ts.words, "position": ts.position}[color]
    hover = [f"{t} ({lab}): {cx}" for t, lab, cx in zip(ts.tokens, ts.labels, ts.contexts)]
    fig = FB.projection_figure(xy, values, hover, f"{len(xy)} tokens of {data}, layer {layer}, {method.upper()}",
                               color, categorical=color != "position")
    if state.current("lecture", False):
        fig.update_layout(font=dict(size=LECTURE_FONT))
    event = st.plotly_chart(fig, config=common.plot_config("projector"), key="fig_projector", on_select="rerun",
                            selection_mode="points")
    picked = _picked(event, len(xy))
    last = st.session_state.get("_proj_last_pick")
    point = state.get("point")
    if picked is not None and picked != last:  # a new click wins over the URL's point
        st.session_state["_proj_last_pick"] = point = picked
    point = state.put("point", point if isinstance(point, int) and 0 <= point < len(xy) else None)
    if point is not None:
        i = int(ts.text_index[point])
        st.markdown(f"**Token {point}: `{ts.tokens[point]}`** ({ts.labels[point]}), text {i}:")
        st.code(ts.texts[i], language=None, wrap_lines=True)
        st.page_link("views/attention.py", label="Open this text on the Attention page",
                     query_params={"model": loaded.info.name, "text": ts.texts[i], "token": str(int(ts.position[point]))})
    st.download_button("Download HTML", data=lambda: common.figure_html(fig), file_name="projector.html",
                       mime="text/html", key="dl_projector", on_click="ignore", icon=":material/download:")
    table = pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1], "token": ts.tokens, "label": ts.labels,
                          "text": ts.text_index, "position": ts.position, "context": ts.contexts})
    st.download_button("Download points (CSV)", table.to_csv(index=False), file_name="projector.csv", mime="text/csv",
                       key="dl_projector_csv", on_click="ignore")
    warm_umap()  # once per server, after the page is drawn: the UMAP choice is then quick


def _picked(event, n: int) -> int | None:
    """The global index of the clicked point (from its customdata), or None."""
    points = getattr(getattr(event, "selection", None), "points", None) or []
    if not points:
        return None
    cd = points[0].get("customdata")
    i = cd[0] if isinstance(cd, list) else cd
    return int(i) if isinstance(i, (int, float)) and 0 <= int(i) < n else None


render()
