"""Masked LM: what the model predicts under each mask, next-sentence / sentence-order probability for a
pair, and how BERT was trained (15% of tokens chosen; 80% [MASK], 10% random, 10% kept).

Type `[MASK]` or `<mask>` (either spelling works for every masked-LM model) or click words of the sentence
to mask them; a masked word's rank and probability are shown even outside the top k.
Keys: `masked` (token indices), `wwm`, `topk`, `pair`, `seed` (plus `model`, `text`).
"""
from __future__ import annotations

import random

import streamlit as st

from app import common, state
from app.figures import masked_lm as F
from app.widgets import saliency
from model.inspect import InputError, encode
from model.corruption import corrupt, mask_positions

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
    st.html(F.corruption_html(demo.rows))
    counts = demo.counts()
    cols = st.columns(4)
    for col, (name, label) in zip(cols, [("mask", "→ mask token"), ("random", "→ random token"), ("kept", "kept, predicted"),
                                         ("untouched", "not chosen")]):
        col.metric(label, counts[name])
    with st.expander("Every token, with what happened and why"):
        st.dataframe(F.corruption_table(demo.rows), hide_index=True)


def _pill(token) -> str:
    """A token as a pill's label: word-start markers shown as a space sign, nothing empty."""
    return token.text.replace("Ġ", "␣").replace("▁", "␣") or "∅"


def _mask_picker(tokens, text: str, mask_token: str) -> list[int]:
    """The sentence as clickable pills, one per token: a click masks that token (exBERT's gesture). The
    picks are token indices of this text: a new text starts with none."""
    ss = st.session_state
    if ss.get("_mlm_text") is not None and ss["_mlm_text"] != text:
        state.preset("masked", [])
    ss["_mlm_text"] = text
    options = [i for i, t in enumerate(tokens) if not t.special and t.text != mask_token and t.end > t.start]
    return state.pills("Click words to mask them", "masked", options, [], format_func=lambda i: _pill(tokens[i]),
                       help="Each click hides one token from the model; click again to show it. Typed masks stay.")


def _hidden(m, truth: str | None) -> str:
    """The caption under a mask whose hidden token is known: where the model ranks it, in the top k or not."""
    k = len(m.predictions)
    if m.target is not None and m.target_rank is not None:
        where = f"rank {m.target_rank}" + (f" (in the top {k})" if m.target_rank <= k else f", outside the top {k}")
        return f"Hidden token `{m.target.token}`: {where}, p = {m.target.prob:.4g}"
    return f"Hidden token `{truth}`"


def render() -> None:
    st.title("Masked LM")
    loaded = common.model_picker(need="mlm", prefer=common.prefers("mlm"))
    text = state.text_input("Text (type [MASK] or <mask>, or click words below)", "text", common.DEFAULT_TEXT,
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
    picked = _mask_picker(tokens, text, info.mask_token)
    c1, c2, _ = st.columns([1, 1, 1.5])
    with c1:
        whole_word = state.toggle("Whole words", "wwm", False, help="Mask every piece of a picked word")
    with c2:
        top_k = state.number_input("Top k", "topk", 1, 30, 10)
    masked_text, truths = mask_positions(text, tokens, picked, info.mask_token, whole_word)
    ids = {t.text: t.id for t in tokens}
    targets = tuple(sorted((at, ids[piece]) for at, piece in truths.items() if piece in ids))
    if picked:
        st.markdown("**Model input:**")
        st.code(masked_text, language=None, wrap_lines=True)
    insp = common.inspect_text(loaded, masked_text, pair, top_k=top_k, mask_targets=targets)
    if insp is None:
        return
    common.show_warnings(insp)
    if insp.pair is not None:
        st.metric(PAIR_LABELS[insp.pair.kind], f"{insp.pair.prob:.1%}")
    if not insp.masks:
        st.warning("No mask in the input: type [MASK] (or <mask>) in the text, or click words to mask.")
    for m in insp.masks:
        truth = truths.get(insp.tokens[m.position].start)
        if truth is not None:
            st.caption(_hidden(m, truth))
        common.show(F.mask_bars(m, insp.tokens, truth), f"masked-lm-{m.position}")
    if insp.masks:
        saliency.panel(loaded, masked_text, {m.position: [p.token for p in m.predictions] for m in insp.masks})
    st.divider()
    _training_panel(loaded, text, whole_word)


render()
