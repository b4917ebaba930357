"""Attention: one head's map, every head at a glance, a selected token's view, and one lower panel
(head view with lines, rollout, per-head statistics, or bertviz: its head, model or neuron view).

Stays fast on long inputs: the browser gets the selected head's N x N map, thumbnails of every head
(pooled to 16 x 16, computed once per input) and the one lower panel chosen. A new text draws the shown
layer's map first, from a forward pass stopped after that layer (model.progressive), and the rest once the
whole inspection (without next-token predictions, which this page never shows) is done. bertviz's views, which carry
every head's map (the neuron view also each token's query and key vectors), are offered up to 64 tokens.
Keys: `layer`, `head`, `token` (absent: none; forgotten when the model or text changes), `lines`, `panel`,
`bertviz` ("head", "model" or "neuron") (plus `model`, `text`). The neuron view opens at the page's layer and head.
"""
from __future__ import annotations

import streamlit as st

from app import common, state
from app.figures import attention as F, style
from app.widgets import bertviz_view, neuron_view, saliency
from model.inspect import InputError, Unavailable, neuron_data, neuron_unavailable
from model.progressive import draws_sooner

PANELS = ("head view", "rollout", "head statistics", "bertviz")
BERTVIZ_VIEWS = ("head", "model", "neuron")
NO_TOKEN = None  # no token selected (left out of the URL)


def _token_section(loaded, insp, layer: int, head: int, token: int) -> None:
    row, col = F.attends(insp, layer, head, token)
    t = insp.tokens[token]
    st.markdown(f"**Token {token} `{t.text}` attends to** (layer {layer}, head {head}; darker = more):")
    st.html(F.weighted_tokens_html(insp.tokens, row, token))
    st.markdown(f"**Tokens attending to {token} `{t.text}`:**")
    st.html(F.weighted_tokens_html(insp.tokens, col, token, rgb="230,85,13"))
    st.page_link("views/corpus_search.py", label=f"Tokens like {t.text!r} at layer {layer + 1} in a corpus (corpus search)",
                 query_params={"model": insp.model_name, "query": insp.text, "token": str(token), "layer": str(layer + 1)})
    saliency.panel(loaded, insp.text, {token: []}, title=f"Which tokens the prediction at token {token} depends on "
                   "(saliency, beside its attention)", name="attention-saliency")


def _neuron(loaded, insp, layer: int, head: int) -> None:
    """bertviz's neuron view of (layer, head): each token's query and key, q x k and the softmax."""
    reason = neuron_unavailable(loaded)
    if reason is not None:
        st.info(f"The neuron view needs each head's queries and keys. {reason}.")
        return
    try:
        data = common.derived(insp, "neuron", lambda: neuron_data(loaded, insp.text, insp.text_pair))
        page = neuron_view.neuron_html(data, layer, head)
    except (Unavailable, InputError, bertviz_view.BertvizUnavailable) as e:
        st.warning(str(e))
        return
    st.caption("Hover a token on the left to see what it attends to; click the ⊕ beside it for its query, every "
               "key, their elementwise product, the score q · k (scaled as the model scales it) and the softmax.")
    if getattr(loaded.backend, "rotary", False):
        st.caption("This model encodes positions by rotating queries and keys (rotary embeddings): the vectors shown "
                   "are after the rotation, exactly what the model scores, so a token's query changes with its position.")
    st.iframe(page, height=neuron_view.frame_height(data))
    st.download_button("Download bertviz HTML", page, file_name="bertviz-neuron.html", mime="text/html",
                       on_click="ignore", key="dl_bertviz")


def _bertviz(loaded, insp, layer: int, head: int) -> None:
    n = len(insp.tokens)
    if n > bertviz_view.MAX_TOKENS:
        st.info(f"bertviz views are offered for inputs of at most {bertviz_view.MAX_TOKENS} tokens (they carry every "
                f"head's full map); this input has {n}. The heatmap and head view above work at any length.")
        return
    view = state.radio("bertviz view", "bertviz", BERTVIZ_VIEWS, "head")
    if view == "neuron":
        _neuron(loaded, insp, layer, head)
        return
    try:
        page = bertviz_view.bertviz_html(insp, view, layer if view == "head" else None)
    except bertviz_view.BertvizUnavailable as e:
        st.warning(str(e))
        return
    st.iframe(page, height=bertviz_view.frame_height(insp, view))
    st.download_button("Download bertviz HTML", page, file_name=f"bertviz-{view}.html", mime="text/html",
                       on_click="ignore", key="dl_bertviz")


def render() -> None:
    st.title("Attention")
    loaded = common.model_picker(need="attention", prefer=common.prefers("attention"))
    text = state.text_input("Text", "text", common.DEFAULT_TEXT, area=True, height=100)
    if loaded is None:
        return
    # Per-head statistics stream over every layer's maps (seconds at 512 tokens): only when shown. No next-token
    # predictions: this page shows none (the LM head at every position is a third of an inspection at 152k words).
    kw = dict(summaries=state.current("panel", PANELS[0]) == "head statistics", predictions=False)
    shown = state.slider_value("layer", 0, max(0, loaded.backend.num_layers - 1), 0)  # the Layer slider's value
    # A text not inspected yet: the shown layer's map first, from a forward pass stopped after that layer; the
    # whole inspection (everything else on the page) runs once it is drawn.
    first = not common.inspected(loaded, text, **kw) and draws_sooner(loaded, shown)
    view = common.inspect_layer(loaded, text, shown) if first else common.inspect_text(loaded, text, **kw)
    if view is None:
        return
    common.show_warnings(view)
    if not view.has_attention:
        st.warning(view.unavailable.get("attention", "this model has no attention"))
        return
    n = len(view.tokens)
    c1, c2, c3, c4 = st.columns([2, 2, 3, 1])
    with c1:
        layer = state.slider("Layer", "layer", 0, view.num_layers - 1, 0)
    with c2:
        head = state.slider("Head", "head", 0, view.num_heads - 1, 0)
    state.forget_on_change("token", loaded.info.path, text)  # an index into these tokens only
    with c3:
        token = state.selectbox("Selected token", "token", [NO_TOKEN, *range(n)], NO_TOKEN,
                                format_func=lambda i: "(none)" if i == NO_TOKEN else f"{i}: {view.tokens[i].text}")
    with c4:
        top_k = state.number_input("Lines / token", "lines", 1, 10, 3)  # not Masked LM's `topk`
    selected = None if token == NO_TOKEN else token

    left, right = st.columns([3, 2])
    with left:  # (with `first`, layer == shown: the slider clamps as slider_value did, to the same layers)
        common.show(F.attention_heatmap(view, layer, head, selected), "attention-heatmap")
    with right:
        insp = common.inspect_text(loaded, text, checks=False, **kw) if first else view
        if insp is None:
            return
        thumbs = common.derived(insp, "thumbnails", lambda: F.layer_thumbnails(insp))
        font = style.LECTURE_FONT if state.current("lecture", False) else style.BASE_FONT  # common.show's sizes
        common.show(F.layer_head_grid(thumbs, (layer, head), font_size=font), "attention-all-heads")
        note = F.kv_caption(insp.num_heads, getattr(loaded.backend, "num_kv_heads", 0), head)
        if note:
            st.caption(note)
    st.caption("Blank cells are masked: the model gives them no attention at all (a decoder's future tokens, "
               "keys outside a sliding / local window, padding).")
    if selected is not None:
        _token_section(loaded, insp, layer, head, selected)

    panel = state.radio("Panel", "panel", PANELS, PANELS[0])
    if panel == "head view":
        common.show(F.head_lines(insp, layer, head, top_k, selected), "attention-head-view")
    elif panel == "rollout":
        with st.spinner("Rolling attention out over all layers…"):
            fig = F.rollout_heatmap(insp, selected)
        common.show(fig, "attention-rollout")
    elif panel == "head statistics":
        st.caption("Click a column header to sort. Entropy in nats (low: a focused head); distance: mean |query - key| "
                   "in tokens; special share: attention mass on special tokens such as [CLS] / [SEP].")
        st.dataframe(F.head_summary_table(insp), hide_index=True)
        common.show(F.head_summary_heatmaps(insp), "attention-head-statistics")
    else:
        _bertviz(loaded, insp, layer, head)


render()
