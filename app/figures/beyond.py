"""Figures of the views beyond attention (saliency, neuron factors, projector, corpus search). Pure functions:
plain results of `model/` in, plotly figures / DataFrames out; no Streamlit, no torch. User text is escaped.

    >>> fig = saliency_figure([Token("the", 5, 0, 3, False, 0)], np.array([0.5]), "why")
    >>> fig.data[0].zmid
    0.0
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from app.figures.text import esc, token_label, token_labels
from model.results import Token

SALIENCY_SCALE = "RdBu_r"  # red: raised the target's log-probability; blue: lowered it
SVG_POINTS = 10_000  # SVG also draws where WebGL is off (headless chromium with --disable-gpu); WebGL beyond
COMPONENT_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                    "#bcbd22", "#17becf")


def saliency_figure(tokens: Sequence[Token], scores: np.ndarray, title: str) -> go.Figure:
    """A one-row heat strip over the tokens: (N,) scores, diverging around 0, each cell labelled by its token."""
    s = np.asarray(scores, dtype=np.float32)
    top = float(np.abs(s).max()) if s.size and np.abs(s).max() > 0 else 1.0
    labels = token_labels(tokens)
    fig = go.Figure(go.Heatmap(
        z=s[None, :], x=labels, y=["score"], zmid=0.0, zmin=-top, zmax=top, colorscale=SALIENCY_SCALE,
        text=[[token_label(t.text, raw=True) for t in tokens]], texttemplate="%{text}", name="saliency",
        hovertemplate="%{x}<br>score %{z:.4f}<extra></extra>", colorbar=dict(title="score", thickness=12),
    ))
    fig.update_layout(title=dict(text=title, y=0.97, yref="container", yanchor="top"), height=190,
                      margin=dict(l=10, r=10, t=60, b=10),
                      xaxis=dict(type="category", tickangle=-45, showticklabels=len(tokens) <= 80),
                      yaxis=dict(showticklabels=False))
    return fig


def saliency_table(tokens: Sequence[Token], scores: np.ndarray) -> pd.DataFrame:
    """One row per token: index, piece, score (for export as CSV)."""
    return pd.DataFrame({"index": range(len(tokens)), "token": [t.text for t in tokens],
                         "score": np.asarray(scores, dtype=np.float64)})


def components_figure(tokens: Sequence[Token], factors: np.ndarray, title: str) -> go.Figure:
    """NMF factors over the tokens: (N, k) -> a k-row heatmap (rows = components, columns = tokens), each row
    scaled to its own max (Ecco draws each component's activation over the text)."""
    f = np.asarray(factors, dtype=np.float32).T  # (k, N)
    top = f.max(axis=1, keepdims=True)
    z = np.divide(f, top, out=np.zeros_like(f), where=top > 0)
    labels = token_labels(tokens)
    k = f.shape[0]
    fig = go.Figure(go.Heatmap(
        z=z, x=labels, y=[f"component {c}" for c in range(k)], customdata=f, colorscale="Purples", zmin=0, zmax=1,
        hovertemplate="%{y}<br>%{x}<br>activation %{customdata:.4f} (%{z:.0%} of its max)<extra></extra>",
        colorbar=dict(title="share of max", thickness=12), name="components",
    ))
    fig.update_layout(title=title, height=int(120 + 28 * k), margin=dict(l=10, r=10, t=60, b=10),
                      xaxis=dict(type="category", tickangle=-45, showticklabels=len(tokens) <= 120),
                      yaxis=dict(autorange="reversed", type="category"))
    return fig


def component_text_html(tokens: Sequence[Token], factors: np.ndarray) -> str:
    """Ecco's view: each token coloured by its strongest component, opacity by that component's share of its max."""
    f = np.asarray(factors, dtype=np.float32)  # (N, k)
    top = np.maximum(f.max(axis=0), 1e-12)  # (k,)
    share = f / top  # (N, k)
    parts = []
    for i, t in enumerate(tokens):
        c = int(share[i].argmax()) if f.shape[1] else 0
        a = float(share[i, c]) if f.shape[1] else 0.0
        rgb = COMPONENT_COLORS[c % len(COMPONENT_COLORS)]
        r, g, b = (int(rgb[j:j + 2], 16) for j in (1, 3, 5))
        parts.append(f'<span title="{i}: component {c} ({a:.0%})" style="background: rgba({r},{g},{b},{a:.2f}); '
                     f'border-radius: 3px; padding: 1px 3px; margin: 1px; display: inline-block">{token_label(t.text, raw=True)}</span>')
    return '<div style="line-height: 2">' + "".join(parts) + "</div>"


def projection_figure(coords: np.ndarray, color: Sequence, hover: Sequence[str], title: str, color_name: str,
                      categorical: bool) -> go.Figure:
    """(M, 2) points as a scatter coloured by a label / token (categorical: one trace per value, at most 20,
    the rest as "other") or a number (position: a colour scale). SVG up to `SVG_POINTS` points (drawn
    everywhere, also where WebGL is off), WebGL (`Scattergl`) beyond."""
    xy = np.asarray(coords, dtype=np.float32)
    scatter = go.Scatter if len(xy) <= SVG_POINTS else go.Scattergl
    hover = [esc(h) for h in hover]
    fig = go.Figure()
    if categorical:
        values = pd.Series(list(color))
        keep = list(values.value_counts().index[:20])
        values = values.where(values.isin(keep), "other")
        for v in dict.fromkeys([*keep, "other"]):  # once each: "other" may also be a label (toy world)
            idx = np.flatnonzero(values.to_numpy() == v)
            if len(idx) == 0:
                continue
            fig.add_trace(scatter(x=xy[idx, 0], y=xy[idx, 1], mode="markers", name=esc(str(v)),
                                       marker=dict(size=5), text=[hover[i] for i in idx], customdata=idx,
                                       hovertemplate="%{text}<extra></extra>"))
    else:
        fig.add_trace(scatter(x=xy[:, 0], y=xy[:, 1], mode="markers", name="points", text=hover,
                                   customdata=np.arange(len(xy)),
                                   marker=dict(size=5, color=np.asarray(color, dtype=np.float32), colorscale="Viridis",
                                               colorbar=dict(title=color_name, thickness=12)),
                                   hovertemplate="%{text}<extra></extra>"))
    fig.update_layout(title=title, height=620, margin=dict(l=10, r=10, t=50, b=10), legend_title_text=color_name,
                      xaxis=dict(title="1"), yaxis=dict(title="2"))
    return fig


def neighbours_table(rows: Sequence[dict]) -> pd.DataFrame:
    """Corpus search hits -> a table (rank, token, similarity / distance, context)."""
    return pd.DataFrame(list(rows), columns=["rank", "token", "score", "doc", "position", "context"])
