"""Tokenization: one text cut by several tokenizers side by side.

Pieces keep their markers (`##` continues a word in WordPiece, `Ġ` starts one after a space in GPT-2's
byte-level BPE, `▁` in SentencePiece); special tokens are grey, unknown tokens red; the figure aligns
every tokenizer on the input's characters. Keys: `?models=a,b,c` (listed names or model folders inside the
allowed model folders; plus `model`, `text`).
"""
from __future__ import annotations

import streamlit as st

from app import common, model_notes, state
from app.figures import tokenization as F
from app.figures.text import esc
from model.inspect import InputError, encode


FAMILY = {"bert": "WordPiece", "distilbert": "WordPiece", "roberta": "byte-level BPE", "gpt2": "byte-level BPE",
          "albert": "SentencePiece"}


def _default_models(current: str | None) -> list[str]:
    """The sidebar's model plus one model of each other tokenizer family, at most three."""
    chosen = [current] if current else []
    families = {FAMILY.get(e.model_type, e.model_type) for e in common.listed_models() if e.name == current}
    for e in common.listed_models():
        family = FAMILY.get(e.model_type)
        if len(chosen) < 3 and family and family not in families and not e.note:
            chosen.append(e.name)
            families.add(family)
    return chosen


def render() -> None:
    st.title("Tokenization")
    picked = common.pick_model()
    loaded = common.load_picked(picked) if picked is not None else None
    text = state.text_input("Text", "text", common.DEFAULT_TEXT, area=True, height=100)
    current = picked if loaded is not None else None  # as picked: a path stays a path (its name is the folder's)
    asked = state.current("models")  # from the link or this session: paths and unlisted models are offered too
    extra = ([current] if current else []) + [m for m in (asked if isinstance(asked, list) else []) if isinstance(m, str)]
    names = state.multiselect("Tokenizers to compare", "models", common.model_options("models", extra),
                              _default_models(current))
    if not names:
        st.info("Pick at least one model to see its tokens.")
        return
    if not text.strip():
        st.error("The text is empty: type a sentence above.")
        return
    rows = []
    for name in names:
        m = common.load(name)
        if m is None:
            continue
        try:
            enc = encode(m, text)
        except InputError as e:
            st.error(f"{name}: {e}")
            continue
        for w in enc.warnings:
            st.warning(f"{name}: {w}")
        model_notes.vocabulary_warning(m, text, common.model_names())
        rows.append((name, text, enc.tokens))
    if not rows:
        return
    st.dataframe(F.tokenization_stats(rows), hide_index=True)
    common.show(F.tokenization_figure(rows), "tokenization")
    for name, _, tokens in rows:
        st.markdown(f"**{esc(name)}** — {sum(not t.special for t in tokens)} tokens (ids beneath each piece)")
        st.html(F.tokens_html(tokens))


render()
