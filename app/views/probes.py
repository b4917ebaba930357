"""Agreement probes: does the model make the verb agree with its subject, or did it learn a shortcut?

Scores toy-world probes ("the dog near the cats [runs/run]") on the picked masked or causal model and shows
how often it prefers the right verb form, per probe kind: no noun in between, an attractor noun of the
subject's own number ("same") or of the other number ("opposite"), in a prepositional phrase or a relative
clause. A model trained where every attractor had the opposite number (demo/gpt2-shortcut) passes
"opposite" and fails "same": it learned "the opposite number of the nearest noun". Keys: `?probes=` (how
many probes), plus `model`.
"""
from __future__ import annotations

import streamlit as st

from app import common, state
from app.figures import probes as F
from model.errors import LmscopeError

DEFAULT_PROBES = 300


@st.cache_data(max_entries=16, show_spinner="Scoring the probes…")
def _agreement(name: str, n: int):
    """model.probes.agreement on a model loaded by name (cached per model and probe count)."""
    from model.probes import agreement

    return agreement(common.load_cached(name), n=n, n_examples=3)


def render() -> None:
    st.title("Agreement probes")
    st.caption("How often the model scores the verb form that agrees with the subject above the other one, per "
               "probe kind. Chance is 50%. Compare demo/gpt2-shortcut (trained where every noun between subject "
               "and verb had the other number) with demo/gpt2: the shortcut model fails the same-number kinds.")
    name = common.pick_model(prefer=common.prefers("causal"))
    if name is None:
        return
    loaded = common.load_picked(name)
    if loaded is None:
        return
    n = state.slider("Probes", "probes", 50, 2000, DEFAULT_PROBES, step=50)
    try:
        r = _agreement(name, n)
    except LmscopeError as e:  # e.g. an encoder without an LM head
        st.error(str(e))
        return
    if r.counts[0] == 0:
        st.warning(f"{name}'s tokenizer cuts the verb forms into several tokens, so this causal model cannot compare "
                   f"them ({r.skipped} probes skipped). Pick a model trained on the toy world.")
        return
    c1, c2, c3 = st.columns(3)
    by = r.by_group()
    for col, g, label in ((c1, "none", "no attractor"), (c2, "same", "same-number attractor"),
                          (c3, "opposite", "opposite-number attractor")):
        col.metric(label, "-" if by[g] is None else f"{100 * by[g]:.1f}%")
    common.show(F.agreement_figure(r), "agreement")
    st.dataframe(F.agreement_table(r), hide_index=True)
    if r.skipped:
        st.info(f"{r.skipped} probes skipped: their verb forms are not one token each.")
    st.markdown("#### Example probes")
    st.caption("Scores are log-probabilities (nats; higher = preferred). Masked models: at the mask. Causal "
               "models: of the verb after the sentence's prefix, following a document's opening sentence.")
    st.dataframe(F.examples_table(r), hide_index=True)


render()
