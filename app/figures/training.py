"""Figures of the Train page (the loss curves are also the Fine-tune page's): training and held-out loss
against the step, a run's time left, and a probe's top predictions over the checkpoints.
"""
from __future__ import annotations

import math
from typing import Sequence

import plotly.graph_objects as go

from app.figures.style import KEPT_COLOR, PICK_COLOR
from app.figures.text import token_label
from model.results import Prediction


def _subsample(xs: list, limit: int) -> list:
    if len(xs) <= limit:
        return xs
    stride = math.ceil(len(xs) / limit)
    return xs[::stride] + ([xs[-1]] if (len(xs) - 1) % stride else [])


def smooth(values: Sequence[float], alpha: float = 0.1) -> list[float]:
    """Exponential moving average with bias correction (as TensorBoard draws it).

    >>> [round(v, 3) for v in smooth([1.0, 0.0], alpha=0.5)]
    [1.0, 0.333]
    """
    out, avg = [], 0.0
    for i, v in enumerate(values, start=1):
        avg = (1 - alpha) * avg + alpha * v
        out.append(avg / (1 - (1 - alpha) ** i))
    return out


def loss_figure(events: Sequence[dict], max_points: int = 1500) -> go.Figure:
    """Training loss (raw and smoothed) and held-out loss against the step; the unigram baseline as a
    dashed line (a model above it has learned no more than token frequencies)."""
    steps = [e for e in events if e.get("type") == "step"]
    evals = [e for e in events if e.get("type") == "eval"]
    fig = go.Figure()
    if steps:
        sm = smooth([e["loss"] for e in steps])
        pts = _subsample(list(zip(steps, sm)), max_points)
        fig.add_trace(go.Scatter(x=[e["step"] for e, _ in pts], y=[e["loss"] for e, _ in pts], mode="lines", name="train loss",
                                 line=dict(color="#aec7e8", width=1)))
        fig.add_trace(go.Scatter(x=[e["step"] for e, _ in pts], y=[s for _, s in pts], mode="lines", name="train (smoothed)",
                                 line=dict(color=KEPT_COLOR, width=2)))
    if evals:
        fig.add_trace(go.Scatter(x=[e["step"] for e in evals], y=[e["loss"] for e in evals], mode="lines+markers",
                                 name="held-out loss", line=dict(color=PICK_COLOR, width=2),
                                 customdata=[[e.get("perplexity", float("nan")), e.get("accuracy", float("nan"))] for e in evals],
                                 hovertemplate="step %{x}<br>held-out loss %{y:.3f}<br>perplexity %{customdata[0]:.2f}"
                                               "<br>masked-token accuracy %{customdata[1]:.3f}<extra></extra>"))
        uni = evals[-1].get("unigram_loss")
        if uni is not None and math.isfinite(uni):
            fig.add_hline(y=uni, line_dash="dash", line_color="#7f7f7f", annotation_text="unigram baseline",
                          annotation_position="top left")
    total = next((e.get("total_steps") for e in reversed(events) if e.get("total_steps")), None)
    fig.update_layout(height=340, margin=dict(t=30, b=30, l=50, r=10), xaxis=dict(title="step", range=[0, total] if total else None),
                      yaxis=dict(title="loss (nats)"), legend=dict(orientation="h", y=1.1))
    return fig



def format_duration(seconds: float | None) -> str:
    """
    >>> format_duration(75), format_duration(4000), format_duration(None)
    ('1 min 15 s', '1 h 6 min', '–')
    """
    if seconds is None or not math.isfinite(seconds):
        return "–"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"


def checkpoint_predictions_figure(rows: Sequence[tuple[int, list[Prediction]]], highlight: int | None = None) -> go.Figure:
    """How a probe's top predictions change over training: x = checkpoint step, one line per token that
    was ever in a checkpoint's top list, y = its probability there (0 where it was not listed); the
    selected checkpoint marked."""
    tokens: dict[str, dict[int, float]] = {}
    for step, preds in rows:
        for p in preds:
            tokens.setdefault(p.token, {})[step] = p.prob
    steps = [s for s, _ in rows]
    fig = go.Figure()
    for tok, by_step in sorted(tokens.items(), key=lambda kv: -max(kv[1].values()))[:10]:
        fig.add_trace(go.Scatter(x=steps, y=[by_step.get(s, 0.0) for s in steps], mode="lines+markers", name=token_label(tok)))
    if highlight is not None:
        fig.add_vline(x=highlight, line_dash="dot", line_color=PICK_COLOR)
    fig.update_layout(height=300, margin=dict(t=20, b=30, l=50, r=10), xaxis=dict(title="checkpoint step"),
                      yaxis=dict(title="p", range=[0, 1]))
    return fig
