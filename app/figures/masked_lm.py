"""Figures of the Masked LM page: the top predictions at a mask (and the hidden token's rank), and the
"how BERT was trained" corruption of a sentence. Pieces are shown as the tokenizer spells them.
"""
from __future__ import annotations

from typing import Sequence

import pandas as pd
import plotly.graph_objects as go

from app.figures.style import TRUTH_COLOR
from app.figures.text import attr, token_label
from model.results import MaskPrediction, Token

ACTION_COLORS = {"special": "#d9d9d9", "untouched": "#ffffff", "mask": "#6baed6", "random": "#fd8d3c", "kept": "#74c476"}
TOP_COLOR, OTHER_COLOR = "#2171b5", "#9ecae1"


def mask_bars(mask: MaskPrediction, tokens: Sequence[Token], truth: str | None = None) -> go.Figure:
    """Top-k predictions at one mask as horizontal bars, best on top; `truth` (the token that was
    masked, when known) is drawn in orange. When the mask's `target` (the hidden token, from
    `inspect(mask_targets=...)`) is not among them, it gets a bar of its own under a gap, labelled with
    its rank over the whole vocabulary."""
    preds = mask.predictions
    truth = truth if truth is not None else (mask.target.token if mask.target is not None else None)
    colors = [TRUTH_COLOR if truth is not None and p.token == truth else (TOP_COLOR if i == 0 else OTHER_COLOR)
              for i, p in enumerate(preds)]
    labels = [f"{i + 1}. {token_label(p.token, raw=True)}" for i, p in enumerate(preds)]
    xs = [p.prob for p in preds]
    t = mask.target
    outside = t is not None and mask.target_rank is not None and all(p.id != t.id for p in preds)
    if outside:  # a blank row, then the hidden token at its rank
        labels += ["⋮", f"{mask.target_rank}. {token_label(t.token, raw=True)}"]
        xs += [None, t.prob]
        colors += [OTHER_COLOR, TRUTH_COLOR]
    fig = go.Figure(go.Bar(
        x=xs, y=labels, orientation="h",
        marker=dict(color=colors), text=[("" if x is None else f"{x:.1%}" if x >= 0.001 else f"{x:.1e}") for x in xs],
        textposition="outside", hovertemplate="%{y}: %{x:.4g}<extra></extra>", name=f"mask {mask.position}",
    ))
    ctx = _context(tokens, mask.position)
    title = f"Token {mask.position}: {ctx}" + (f" (was {token_label(truth, raw=True)})" if truth else "")
    fig.update_layout(title=title, height=int(90 + 26 * len(labels)), margin=dict(l=10, r=40, t=50, b=10),
                      xaxis=dict(title="probability", range=[0, max([p.prob for p in preds] + [0.01]) * 1.2]),
                      yaxis=dict(autorange="reversed", type="category"))
    return fig


def _context(tokens: Sequence[Token], pos: int, width: int = 4) -> str:
    lo, hi = max(0, pos - width), min(len(tokens), pos + width + 1)
    parts = [token_label(t.text, raw=True) for t in tokens[lo:hi]]
    parts = [f"<b>{p}</b>" if i == pos else p for i, p in enumerate(parts, lo)]
    return ("… " if lo > 0 else "") + " ".join(parts) + (" …" if hi < len(tokens) else "")


def corruption_html(rows) -> str:
    """The "how BERT was trained" sentence: each token as the model sees it, coloured by what happened
    (blue: [MASK], orange: random token, green: kept but predicted, grey: special), original beneath."""
    parts = []
    for r in rows:
        bg = ACTION_COLORS.get(r.action, "#fff")
        under = token_label(r.token, raw=True) if r.action in ("mask", "random", "kept") else "&nbsp;"
        parts.append(
            f'<span title="{attr(r.reason)}" style="display: inline-block; text-align: center; background: {bg}; '
            f'border: 1px solid #444; border-radius: 3px; margin: 2px; padding: 1px 4px; font-family: monospace">'
            f'{token_label(r.shown, raw=True)}<br><small>{under}</small></span>'
        )
    return '<div style="line-height: 1.3">' + "".join(parts) + "</div>"


def corruption_table(rows) -> pd.DataFrame:
    return pd.DataFrame([{"#": r.position, "token": r.token, "action": r.action, "model sees": r.shown,
                          "why": r.reason} for r in rows], columns=["#", "token", "action", "model sees", "why"])
