"""The saliency panel: which input tokens one prediction depends on, as a heat strip (Captum, `model.attribute`).

One call from a page draws it; the page says which predictions can be explained:

    saliency.panel(loaded, text, {6: ["run", "sleep"]})     # position -> candidate tokens (best first)

Widgets (bound to the URL): `saliency` (method: "integrated gradients", "grad x input" or "off"),
`sal_pos` (the position, when there are several) and `sal_token` (the candidate). Results are kept per
session (a few), so moving other widgets does not recompute them.
"""
from __future__ import annotations

from collections import OrderedDict

import streamlit as st

from app import common, state
from app.figures import beyond as FB
from app.figures.text import token_label
from model.errors import LmscopeError

METHODS = {"integrated gradients": "integrated_gradients", "grad x input": "grad_x_input", "off": None}
KEPT = 8  # attributions remembered per session
STEPS = 32  # integration points: completeness error well under 1% on the demo models


def _cached(loaded, text: str, position: int | None, token: str | None, method: str):
    cache: OrderedDict = st.session_state.setdefault("_saliency", OrderedDict())
    key = (loaded.info.path, text, position, token, method)
    if key not in cache:
        from model.attribute import attribute

        with st.spinner("Attributing the prediction to the input tokens…"):
            cache[key] = attribute(loaded, text, target_position=position, target_token=token, method=method, steps=STEPS)
        while len(cache) > KEPT:
            cache.popitem(last=False)
    cache.move_to_end(key)
    return cache[key]


def panel(loaded, text: str, candidates: dict[int, list[str]], *, title: str = "Why this prediction?",
          name: str = "saliency") -> None:
    """Draw the panel for `candidates` (token position -> candidate pieces, best first; [] = the top prediction;
    position None = the first mask / the last token)."""
    from model.attribute import unavailable

    st.markdown(f"**{title}**")
    reason = unavailable(loaded)
    if reason is not None:
        st.info(f"Saliency is not available: {reason}.")
        return
    if not candidates:
        return
    positions = list(candidates)
    c1, c2, c3 = st.columns([2, 2, 2])
    with c1:
        label = state.radio("Saliency", "saliency", list(METHODS), "integrated gradients",
                            help="Integrated gradients (from zeroed word embeddings) or gradient x input, via Captum")
    method = METHODS[label]
    if method is None:
        return
    with c2:
        pos = positions[0] if len(positions) == 1 else state.selectbox("Explain position", "sal_pos", positions,
                                                                       positions[0])
    options = candidates[pos] or [None]
    with c3:
        token = state.selectbox("Explain token", "sal_token", options, options[0],
                                format_func=lambda t: "(top prediction)" if t is None else t)
    try:
        a = _cached(loaded, text, None if pos is None else int(pos), token, method)
    except LmscopeError as e:  # InputError / Unavailable: a message, never a traceback
        st.error(str(e))
        return
    t = a.target
    what = "under" if t["kind"] == "masked" else "after"
    common.show(FB.saliency_figure(a.tokens, a.scores, f"{label}: log p({token_label(t['token'], raw=True)}) {what} token "
                                   f"{t['position']}; red raised it, blue lowered it"), name)
    note = (f"log p = {a.target_score:.3f} on the input, {a.baseline_score:.3f} on the baseline (word embeddings "
            f"zeroed, special tokens kept)")
    if a.convergence_delta is not None:
        note += f"; the scores sum to the difference up to {a.convergence_delta:+.2e} ({a.steps} steps)"
    st.caption(note)
    st.download_button("Download scores (CSV)", FB.saliency_table(a.tokens, a.scores).to_csv(index=False),
                       file_name=f"{name}.csv", mime="text/csv", on_click="ignore", key=f"dl_{name}_csv")
