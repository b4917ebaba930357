"""Neurons: which tokens fire the same feed-forward neurons (Ecco's NMF view).

The feed-forward activations of one layer (or all) are factorized into k non-negative components; each
component is drawn over the tokens, and the text is coloured by each token's strongest component.
Keys: `ffn_layer` ("all" or a layer index), `k` (plus `model`, `text`).
"""
from __future__ import annotations

from collections import OrderedDict

import pandas as pd
import streamlit as st

from app import common, state
from app.figures import beyond as FB
from model.inspect import InputError, Unavailable
from model.neurons import MAX_K, neurons, unavailable

KEPT = 4


def _factors(loaded, text: str, layers, k: int):
    cache: OrderedDict = st.session_state.setdefault("_neurons", OrderedDict())
    key = (loaded.info.path, text, layers, k)
    if key not in cache:
        with st.spinner("Reading the feed-forward activations and factorizing them…"):
            cache[key] = neurons(loaded, text, layers=None if layers is None else [layers], k=k)
        while len(cache) > KEPT:
            cache.popitem(last=False)
    return cache[key]


def render() -> None:
    st.title("Neurons")
    loaded = common.model_picker(prefer=common.prefers("attention"), need=unavailable)
    text = state.text_input("Text", "text", common.DEFAULT_TEXT, area=True, height=100)
    if loaded is None:
        return
    if not text.strip():
        st.error("The text is empty: type a sentence above.")
        return
    c1, c2 = st.columns(2)
    with c1:
        choice = state.selectbox("Layers", "ffn_layer", ["all", *[str(i) for i in range(loaded.backend.num_layers)]],
                                 "all", help="Factorize one layer's neurons, or every layer's side by side")
    with c2:
        k = state.slider("Components (k)", "k", 2, MAX_K, 5)
    try:
        r = _factors(loaded, text, None if choice == "all" else int(choice), int(k))
    except (InputError, Unavailable) as e:
        st.error(str(e))
        return
    common.show_warnings(r)
    where = "all layers" if choice == "all" else f"layer {choice}"
    st.caption(f"{r.activations.shape[2]} neurons per layer, {where}; activations clipped at 0, factorized by "
               f"scikit-learn's NMF (relative reconstruction error {r.error:.3f}).")
    st.html(FB.component_text_html(r.tokens, r.factors))
    common.show(FB.components_figure(r.tokens, r.factors, f"NMF components of the feed-forward activations ({where})"),
                "neuron-components")
    rows = [{"component": c, "layer": l, "neuron": j, "weight": w} for c in range(r.k) for l, j, w in r.top_neurons(c, 5)]
    with st.expander("The heaviest neurons of each component"):
        st.dataframe(pd.DataFrame(rows), hide_index=True)
    st.download_button("Download factors (CSV)", pd.DataFrame(r.factors, columns=[f"component {c}" for c in range(r.k)],
                                                              index=[t.text for t in r.tokens]).to_csv(),
                       file_name="neuron-factors.csv", mime="text/csv", on_click="ignore", key="dl_neuron_csv")


render()
