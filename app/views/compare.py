"""Compare MLM vs causal: one sentence read by a masked-LM model and by a causal model.

Per token, the probability each model gives the token that is really there: the masked LM with the token
masked and everything else visible (pseudo-log-likelihood, PLL), the causal model from the left context
only; an ELMo model shows both of its LMs (forward: left context, backward: right context). The two
tokenizations are aligned on the input characters. Below, the logit lens: each layer's guess, layer x token.

A long text is scored and drawn only as far as the models read it: each model stops at its own length (a
message names it), the page reads at most MAX_CHARS characters (a masked LM runs once per token), and the
figures cover only the characters some model read, with a bounded number of axis labels.

Keys: `model` (the masked LM), `model2` (the causal model), `lens` (which model's logit lens), plus `text`.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import streamlit as st

from app import common, state
from app.figures import compare as F

MAX_CHARS = 2000  # characters of a longer text the page reads (PLL: one forward pass per token)


def clip_text(text: str, limit: int = MAX_CHARS) -> str:
    """The first `limit` characters of `text`, cut at the last space when one is near the end.

    >>> clip_text("the cat sat on", 12), clip_text("abc", 12)
    ('the cat sat', 'abc')
    """
    if len(text) <= limit:
        return text
    space = text.rfind(" ", 0, limit + 1)
    return text[:space] if space >= limit * 0.8 else text[:limit]


def read_extent(rows: list[F.ProbRow]) -> int:
    """How many characters of the text some row's tokens cover (where the longest reading ends)."""
    return max((t.end for r in rows for t in r.tokens if not t.special and t.segment == 0), default=0)


def _rows(mlm_insp, causal_insp, mlm_name: str, causal_name: str) -> list[F.ProbRow]:
    rows = []
    if mlm_insp is not None and mlm_insp.surprisal is not None:
        rows.append(F.ProbRow(f"{mlm_name} (masked LM, PLL)", mlm_insp.tokens, F.bits_to_prob(mlm_insp.surprisal), "pll"))
    if causal_insp is not None and causal_insp.surprisal is not None:
        elmo = causal_insp.backward_surprisal is not None
        rows.append(F.ProbRow(f"{causal_name} ({'ELMo forward LM' if elmo else 'causal LM'})", causal_insp.tokens,
                              F.bits_to_prob(causal_insp.surprisal), "causal"))
        if elmo:
            rows.append(F.ProbRow(f"{causal_name} (ELMo backward LM)", causal_insp.tokens,
                                  F.bits_to_prob(causal_insp.backward_surprisal), "backward"))
    return rows


def summary_table(rows: list[F.ProbRow]) -> pd.DataFrame:
    """Per row: tokens, how many got a probability, mean p, total bits, and bits per character of the
    characters those tokens cover (comparable across tokenizers, unlike bits per token)."""
    out = []
    for r in rows:
        real = [(t, p) for t, p in zip(r.tokens, r.probs) if not t.special]
        scored = [(t, p) for t, p in real if not math.isnan(p)]
        bits = sum(-math.log2(max(p, 1e-300)) for _, p in scored)
        chars = sum(t.end - t.start for t, _ in scored)
        out.append({"reading": r.label, "tokens": len(real), "scored": len(scored),
                    "mean p": round(float(np.mean([p for _, p in scored])), 4) if scored else None,
                    "total bits": round(bits, 2), "bits / character": round(bits / chars, 3) if chars else None})
    return pd.DataFrame(out)


def render() -> None:
    st.title("Compare: masked LM vs causal LM")
    mlm = common.model_picker("model", "Masked LM", need="mlm", prefer=common.prefers("mlm"))
    causal = common.model_picker("model2", "Causal LM (GPT-2 or ELMo)", need="causal", prefer=common.prefers("causal"))
    typed = state.text_input("Text", "text", common.DEFAULT_TEXT, area=True, height=80)
    if mlm is None and causal is None:
        return
    text = clip_text(typed)
    mlm_insp = common.inspect_text(mlm, text, pll=True, logit_lens=True, summaries=False) if mlm else None
    causal_insp = common.inspect_text(causal, text, logit_lens=True, summaries=False) if causal else None
    for loaded, insp in ((mlm, mlm_insp), (causal, causal_insp)):
        for w in getattr(insp, "warnings", None) or []:
            st.warning(f"{loaded.info.name}: {w}")  # e.g. how many tokens it reads and where it stopped
    rows = _rows(mlm_insp, causal_insp, mlm.info.name if mlm else "", causal.info.name if causal else "")
    if not rows:
        return
    shown = read_extent(rows) or len(text)
    if typed[shown:].strip():
        st.info(f"Shown below: the first {shown:,} of {len(typed):,} characters, as far as "
                + ("either model reads" if len(rows) > 1 else "the model reads")
                + (f" (this page reads at most {MAX_CHARS:,} characters)" if len(text) < len(typed) else "")
                + ". Shorten the text to compare other parts of it.")
    text = text[:shown]
    st.markdown("How probable each model finds **the token that is really there** (darker = more surprising). "
                "A masked LM sees both sides of the masked token; a causal LM only what came before it, so it has "
                "nothing to go on for the first token. PLL is not a true probability of the sentence (each token "
                "is scored with all the others given), so compare it across masked LMs, not with the causal LM's.")
    for r in rows:
        st.markdown(f"**{r.label}** — {F.KIND_TEXT[r.kind]}")
        st.html(F.colored_tokens_html(text, r.tokens, r.probs))
    st.dataframe(summary_table(rows), hide_index=True)
    st.subheader("Tokenizations aligned on characters")
    st.caption("Each box covers the characters of one token; colour = probability of that token (grey: no prediction).")
    common.show(F.aligned_figure(text, rows), "compare-aligned")
    common.show(F.probability_bars(rows), "compare-bars")

    st.subheader("Logit lens")
    lenses = {}
    if mlm_insp is not None and mlm_insp.logit_lens is not None:
        lenses[f"{mlm.info.name} (masked LM)"] = (mlm_insp, False)
    if causal_insp is not None and causal_insp.logit_lens is not None:
        lenses[f"{causal.info.name} (causal LM)"] = (causal_insp, True)
    if not lenses:
        st.info("Neither model has a logit lens (it needs an LM head on a transformer; ELMo has none).")
        return
    choice = state.radio("Model", "lens", list(lenses), list(lenses)[0])
    insp, is_causal = lenses[choice]
    st.caption("Every layer's hidden state through the final norm and the LM head: colour = probability of the actual "
               + ("next token" if is_causal else "input token") + "; the text in each cell is that layer's top guess.")
    common.show(F.logit_lens_figure(insp.logit_lens, insp.tokens, causal=is_causal), "logit-lens")


render()
