"""Figures of the Compare page: per-token probability of the actual token under several models (aligned on
the input's characters, as bars per model, as shaded text) and the logit lens.

Conventions: probabilities are in [0, 1]; surprisal is in bits (p = 2 ** -bits); NaN means "undefined
here" (special tokens, the first token of a causal model) and is drawn as a gap, never as zero.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app.figures.style import KEPT_COLOR
from app.figures.text import attr, esc, token_label, unique
from model.results import LogitLens, Token

PROB_SCALE = "Viridis"  # perceptually uniform and readable in grey print
# Viridis with a light grey slot just below 0 for "no prediction here" (NaN is passed as -1)
NAN_GREY_VIRIDIS = [[0.0, "#eeeeee"], [0.009, "#eeeeee"], [0.0099, "#440154"], [0.25, "#3b528b"], [0.5, "#21918c"],
                    [0.75, "#5ec962"], [1.0, "#fde725"]]
MAX_CHAR_TICKS = 80  # the aligned figure labels each character up to this many, else shows offsets
LENS_TEXT_TOKENS = 64  # the logit lens writes each cell's top guess up to this many tokens (else hover only)


@dataclass(frozen=True)
class ProbRow:
    """One model's (or one LM direction's) reading of a text.

    tokens: the model's tokens with character spans; probs: (N,) probability of each actual token (NaN where
    undefined); kind: how it was measured ("pll", "causal", "backward")."""

    label: str
    tokens: list[Token]
    probs: np.ndarray
    kind: str = ""


KIND_TEXT = {"pll": "p(token | all other tokens), the token masked (PLL)",
             "causal": "p(token | tokens to its left)",
             "backward": "p(token | tokens to its right)"}


def bits_to_prob(bits: np.ndarray | None) -> np.ndarray:
    """Surprisal in bits -> probability (NaN stays NaN)."""
    return np.exp2(-np.asarray(bits, dtype=np.float64))


def aligned_figure(text: str, rows: Sequence[ProbRow]) -> go.Figure:
    """Tokenizations aligned on input characters: one lane per row, each token a box over its character
    span, coloured by the probability of the actual token; the characters of the text label the x axis (up
    to MAX_CHAR_TICKS characters; a longer text gets a bounded number of character-offset ticks)."""
    if not rows:
        raise ValueError("nothing to compare")
    fig = go.Figure()
    lanes = unique([esc(r.label) for r in rows])
    for lane, r in zip(lanes, rows):
        toks = [(t, p) for t, p in zip(r.tokens, r.probs) if not t.special and t.end > t.start]
        fig.add_trace(go.Bar(
            y=[lane] * len(toks), x=[t.end - t.start for t, _ in toks], base=[t.start for t, _ in toks],
            orientation="h", name=esc(r.label), showlegend=False,
            marker=dict(color=[(-1.0 if math.isnan(p) else p) for _, p in toks], colorscale=NAN_GREY_VIRIDIS,
                        cmin=-0.01, cmax=1, line=dict(color="white", width=1), showscale=lane == lanes[0],
                        colorbar=dict(title="p") if lane == lanes[0] else None),
            text=[token_label(t.text) for t, _ in toks], textposition="inside", insidetextanchor="middle",
            customdata=[[("n/a" if math.isnan(p) else f"{p:.4f}"), ("" if math.isnan(p) else f"{-math.log2(max(p, 1e-300)):.2f} bits")]
                        for _, p in toks],
            hovertemplate="%{text}<br>p = %{customdata[0]}<br>%{customdata[1]}<extra>" + esc(r.label) + "</extra>"))
    chars = list(text)
    if len(chars) <= MAX_CHAR_TICKS:  # short text: every character labels the axis
        xaxis = dict(tickmode="array", tickvals=[i + 0.5 for i in range(len(chars))],
                     ticktext=[esc(c) if c.strip() else "␣" for c in chars], title="input characters")
    else:  # long text: character offsets, a bounded number of ticks (one per character froze the browser)
        xaxis = dict(tickmode="auto", nticks=MAX_CHAR_TICKS // 4, title="input character (offset)")
    fig.update_layout(barmode="overlay", height=90 + 55 * len(rows), margin=dict(t=10, b=40, l=10, r=10),
                      xaxis=dict(xaxis, range=[0, max(1, len(chars))], showgrid=False),
                      yaxis=dict(autorange="reversed"), uniformtext=dict(minsize=8, mode="hide"))
    return fig


def probability_bars(rows: Sequence[ProbRow]) -> go.Figure:
    """One bar chart per row: the probability of each actual token, in that model's own tokens."""
    if not rows:
        raise ValueError("nothing to compare")
    fig = make_subplots(rows=len(rows), cols=1, subplot_titles=[f"{esc(r.label)}: {KIND_TEXT.get(r.kind, r.kind)}" for r in rows],
                        vertical_spacing=min(0.15, 0.6 / len(rows)))
    for i, r in enumerate(rows, start=1):
        sel = [(t, p) for t, p in zip(r.tokens, r.probs) if not t.special]
        labels = unique([token_label(t.text) for t, _ in sel])
        fig.add_trace(go.Bar(x=labels, y=[None if math.isnan(p) else p for _, p in sel], name=esc(r.label), showlegend=False,
                             marker_color=KEPT_COLOR, hovertemplate="%{x}<br>p = %{y:.4f}<extra></extra>"), row=i, col=1)
        fig.update_yaxes(range=[0, 1], title_text="p", row=i, col=1)
    fig.update_layout(height=80 + 220 * len(rows), margin=dict(t=40, b=20, l=40, r=10))
    return fig


def colored_tokens_html(text: str, tokens: Sequence[Token], probs: np.ndarray) -> str:
    """The input text with each token's characters shaded by its probability (dark = surprising); every
    character of the input is escaped, so typed HTML stays text. Characters no token covers stay plain."""
    parts, pos = [], 0
    spans = sorted(((t.start, t.end, p, t.text) for t, p in zip(tokens, probs) if not t.special and t.end > t.start))
    for start, end, p, piece in spans:
        if start < pos:
            continue
        parts.append(esc(text[pos:start]))
        if math.isnan(p):
            style, tip = "background:#eeeeee", f"{piece}: no prediction"
        else:
            alpha = min(1.0, max(0.0, -math.log2(max(p, 1e-12)) / 12))  # 12 bits or more = full colour
            style, tip = f"background:rgba(214,39,40,{alpha:.2f})", f"{piece}: p = {p:.4f} ({-math.log2(max(p, 1e-300)):.2f} bits)"
        parts.append(f'<span title="{attr(tip)}" style="{style};border-radius:3px;padding:1px 0">'
                     f"{esc(text[start:end])}</span>")
        pos = end
    parts.append(esc(text[pos:]))
    return '<div style="font-family:monospace;line-height:2;white-space:pre-wrap">' + "".join(parts) + "</div>"


def logit_lens_figure(lens: LogitLens, tokens: Sequence[Token], causal: bool) -> go.Figure:
    """Layer x token heatmap of the probability of the actual token (the next one for causal models, the
    input token itself for masked LMs), with each cell's top-1 token written in it (up to LENS_TEXT_TOKENS
    tokens; beyond, in the hover text only). Row 0 = embeddings."""
    layers, n = lens.actual_prob.shape  # (L + 1, N)
    if n != len(tokens):
        raise ValueError(f"the logit lens has {n} positions but there are {len(tokens)} tokens")
    xlabels = unique([token_label(t.text) for t in tokens])
    ylabels = ["embeddings"] + [f"layer {i}" for i in range(1, layers)]
    top = [[token_label(lens.tokens[l][i][0]) for i in range(n)] for l in range(layers)]
    target = [token_label(tokens[i + 1].text) if causal and i + 1 < n else token_label(tokens[i].text) for i in range(n)]
    z = np.where(np.isnan(lens.actual_prob), None, lens.actual_prob).tolist()
    fig = go.Figure(go.Heatmap(
        z=z, x=xlabels, y=ylabels, colorscale=PROB_SCALE, zmin=0, zmax=1, text=top,
        texttemplate="%{text}" if n <= LENS_TEXT_TOKENS else None, textfont=dict(size=10),
        customdata=[[[target[i], float(lens.probs[l, i, 0])] for i in range(n)] for l in range(layers)],
        colorbar=dict(title="p(actual)"),
        hovertemplate="%{y}, at %{x}<br>actual %{customdata[0]}: p = %{z:.4f}<br>top-1 %{text} (p = %{customdata[1]:.4f})<extra></extra>"))
    fig.update_layout(height=120 + 34 * layers, margin=dict(t=10, b=10, l=10, r=10),
                      xaxis=dict(title="input token" + (" (predicting the next one)" if causal else ""), tickangle=-45))
    return fig
