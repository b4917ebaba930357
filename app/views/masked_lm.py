"""Masked LM: what the model predicts under each mask, next-sentence / sentence-order probability for a
pair, and how BERT was trained (15% of tokens chosen; 80% [MASK], 10% random, 10% kept).

Type `[MASK]` or `<mask>` (either spelling works for every masked-LM model) or pick words to mask.
Keys: `masked` (token indices), `wwm`, `topk`, `pair`, `seed` (plus `model`, `text`).
"""
from __future__ import annotations

import random

import streamlit as st

from app import common, figures, state
from app.widgets import saliency
from model.inspect import InputError, encode
from model.pretraining_demo import corrupt, mask_positions

PAIR_LABELS = {"nsp": "P(sentence B follows sentence A)", "sop": "P(A and B are in their original order)"}


def _reseed() -> None:
    """Button callback: a new seed, never the current one."""
    old = st.session_state.get(state.widget_key("seed"), 0)
    st.session_state[state.widget_key("seed")] = (old + 1 + random.randrange(9_999)) % 10_000


def _training_panel(loaded, text: str, whole_word: bool) -> None:
    st.subheader("How BERT was trained")
    st.markdown("During pretraining each token is **chosen with probability 15%** (specials never). A chosen token is "
                "replaced by the mask token 80% of the time, by a random token 10% of the time, and left unchanged "
                "10% of the time; the model must predict the original token at every chosen position. "
                "Hover a token for the reason.")
    c1, c2 = st.columns([1, 3])
    with c1:
        seed = state.number_input("Seed", "seed", 0, 9_999, 0)
    with c2:
        st.button("Reseed (a new draw, like a new epoch of dynamic masking)", on_click=_reseed)
    try:
        demo = corrupt(loaded, text, seed, whole_word=whole_word)
    except InputError as e:
        st.error(str(e))
        return
    st.html(figures.corruption_html(demo.rows))
    counts = demo.counts()
    cols = st.columns(4)
    for col, (name, label) in zip(cols, [("mask", "→ mask token"), ("random", "→ random token"), ("kept", "kept, predicted"),
                                         ("untouched", "not chosen")]):
        col.metric(label, counts[name])
    with st.expander("Every token, with what happened and why"):
        st.dataframe(figures.corruption_table(demo.rows), hide_index=True)


def render() -> None:
    st.title("Masked LM")
    loaded = common.model_picker(need="mlm", prefer=common.prefers("mlm"))
    text = state.text_input("Text (type [MASK] or <mask>, or pick words below)", "text", common.DEFAULT_TEXT,
                            area=True, height=100)
    if loaded is None:
        return
    info = loaded.info
    has_pair = "nsp" in info.capabilities or "sop" in info.capabilities
    pair = state.text_input("Sentence B (for the pair head)", "pair", "", help=PAIR_LABELS.get(
        "nsp" if "nsp" in info.capabilities else "sop")) if has_pair else None
    try:
        enc = encode(loaded, text)
    except InputError as e:
        st.error(str(e))
        return
    tokens = enc.tokens
    c1, c2, c3 = st.columns([3, 1.3, 1])
    with c1:
        picked = state.multiselect("Words to mask", "masked", [i for i, t in enumerate(tokens) if not t.special], [],
                                   format_func=lambda i: f"{i}: {tokens[i].text}")
    with c2:
        whole_word = state.toggle("Whole words", "wwm", False, help="Mask every piece of a picked word")
    with c3:
        top_k = state.number_input("Top k", "topk", 1, 30, 10)
    masked_text, truths = mask_positions(text, tokens, picked, info.mask_token, whole_word)
    if picked:
        st.markdown("**Model input:**")
        st.code(masked_text, language=None, wrap_lines=True)
    insp = common.inspect_text(loaded, masked_text, pair, top_k=top_k)
    if insp is None:
        return
    common.show_warnings(insp)
    if insp.pair is not None:
        st.metric(PAIR_LABELS[insp.pair.kind], f"{insp.pair.prob:.1%}")
    if not insp.masks:
        st.warning("No mask in the input: type [MASK] (or <mask>) in the text, or pick words to mask.")
    for m in insp.masks:
        truth = truths.get(insp.tokens[m.position].start)
        fig = figures.mask_bars(m, insp.tokens, truth)
        if truth is not None:
            rank = next((i + 1 for i, p in enumerate(m.predictions) if p.token == truth), None)
            st.caption(f"Hidden token `{truth}`: " + (f"rank {rank} of the top {len(m.predictions)}" if rank
                                                      else f"not in the top {len(m.predictions)}"))
        common.show(fig, f"masked-lm-{m.position}")
    if insp.masks:
        saliency.panel(loaded, masked_text, {m.position: [p.token for p in m.predictions] for m in insp.masks})
    st.divider()
    _training_panel(loaded, text, whole_word)


render()
