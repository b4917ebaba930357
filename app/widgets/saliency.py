"""The saliency panel: which input tokens one prediction depends on, as a heat strip (Captum, `model.attribute`).

One call from a page draws it; the page says which predictions can be explained:

    saliency.panel(loaded, text, {6: ["run", "sleep"]})     # position -> candidate tokens (best first)

Widgets (bound to the URL): `saliency` (method: "integrated gradients", "grad x input" or "off"),
`sal_pos` (the position, when there are several) and `sal_token` (the candidate). Results are cached for
the server per (model, text, position, token, method, steps), so a rerun, another tab or a return to an
earlier mask never recomputes them. Before any work the panel estimates it (passes x tokens x parameters)
and, above WORK_BUDGET, says so and waits for a click instead of holding the page.
"""
from __future__ import annotations

import streamlit as st

from app import common, state
from app.figures import beyond as FB
from app.figures.text import token_label
from model.errors import LmscopeError

METHODS = {"integrated gradients": "integrated_gradients", "grad x input": "grad_x_input", "off": None}
KEPT = 64  # attributions kept for the server
STEPS = 32  # integration points: completeness error well under 1% on the demo models
# Estimated multiply-adds (forward + backward ~ 3 forwards of ~1 per parameter per token, per pass) above
# which the panel asks before running: ~15 s at the 2e10 a second measured for integrated gradients on
# en-gpt2 (144 tokens, 32 steps: 2.2 s) on one thread of this shared 2-core machine.
WORK_BUDGET = 3e11


@st.cache_data(max_entries=KEPT, show_spinner="Attributing the prediction to the input tokens…")
def _attribution(_loaded, model_key: tuple, text: str, position: int | None, token: str | None, method: str,
                 steps: int):
    """`model.attribute.attribute`, cached per (model, text, target, method, steps) for the server
    (`_loaded` is the model `model_key` names; Streamlit does not hash it)."""
    from model.attribute import attribute

    return attribute(_loaded, text, target_position=position, target_token=token, method=method, steps=steps)


def work(loaded, n_tokens: int, method: str, steps: int = STEPS) -> float:
    """Estimated multiply-adds of one attribution: passes (steps for integrated gradients, else 1) x
    forward + backward (~3 forwards) x tokens x parameters."""
    passes = steps if method == "integrated_gradients" else 1
    return 3.0 * passes * n_tokens * loaded.info.num_parameters


def _too_long(loaded, text: str, method: str, name: str) -> bool:
    """True (after saying so, with a button to run it anyway) when the attribution would hold the page."""
    from model.inspect import InputError, encode

    try:
        n = len(encode(loaded, text).tokens)
    except InputError:
        return False  # attribute() gives the message
    w = work(loaded, n, method)
    if w <= WORK_BUDGET or st.session_state.get(f"_{name}_anyway") == (loaded.info.path, text, method):
        return False
    fits = int(WORK_BUDGET // work(loaded, 1, method))
    st.info(f"Saliency is not run automatically here: {n} tokens x {loaded.info.num_parameters / 1e6:.0f}M parameters"
            + (f" x {STEPS} integration steps" if method == "integrated_gradients" else "")
            + f" is ~{w:.0e} multiply-adds (the page runs up to {WORK_BUDGET:.0e} by itself: about {fits} tokens "
            f"with this model and method). Shorten the text"
            + (", choose grad x input (one pass)" if method == "integrated_gradients" else "") + ", or run it anyway.")
    if st.button("Run the attribution anyway", key=f"{name}_anyway"):
        st.session_state[f"_{name}_anyway"] = (loaded.info.path, text, method)
        return False
    return True


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
    if _too_long(loaded, text, method, name):
        return
    try:
        a = _attribution(loaded, (loaded.info.path, common.load_dtype()), text, None if pos is None else int(pos),
                         token, method, STEPS)
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
