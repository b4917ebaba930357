"""Figures of the Generation page: the sampling pipeline stage by stage, the candidates of one step, the
steps as a table, and attention over prompt + generated text (the beam-search tree: `beam_tree`).

Conventions: probabilities are in [0, 1]; tokens are shown with visible markers (`token_label`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app.figures.style import BASE_FONT, KEPT_COLOR, LINE, PICK_COLOR, TICK_PAD
from app.figures.text import esc, short, show_token, text_px, token_label, unique
from model.results import FilterStage, GenerationStep, Prediction, Token

CUT_COLOR = "#c7c7c7"  # grey: removed by this stage
STAGE_TITLES = {"input": "model distribution", "repetition_penalty": "repetition penalty",
                "temperature": "temperature", "top_k": "top-k", "top_p": "top-p (nucleus)",
                "typical_p": "typical-p", "min_p": "min-p"}


def _stage_title(stage: FilterStage, vocab: int) -> str:
    name = STAGE_TITLES.get(stage.name, stage.name)
    params = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in stage.params.items())
    return f"{name}{f' ({params})' if params else ''}: {stage.kept} of {vocab} tokens kept"


@dataclass(frozen=True)
class StageGeometry:
    """Pixel budget of the stage chart, per row from the top: the legend, row 1's title, row 1's bars, its
    tick labels, row 2's title, ... and the last row's tick labels (the bottom margin)."""

    bars: float  # plot height of one row's bars
    gap: float  # between two rows: the upper row's tick labels + the lower row's title + padding
    ticks: float  # room under an axis for its tick labels (rotated -45 degrees when they do not fit flat)
    title: float  # a subplot title's height
    legend: float  # the legend's band at the very top
    top: float  # margin above row 1: legend + row 1's title
    bottom: float  # margin under the last row: its tick labels

    def height(self, rows: int) -> int:
        return int(math.ceil(self.top + self.bottom + rows * self.bars + (rows - 1) * self.gap))

    def spacing(self, rows: int) -> float:
        """make_subplots' vertical_spacing: the gap as a fraction of the plot area's height."""
        return self.gap / (rows * self.bars + (rows - 1) * self.gap) if rows > 1 else 0.0


def stage_geometry(tick_labels: Sequence[str], font_size: int = BASE_FONT) -> StageGeometry:
    """Room for `tick_labels` (shown text, unescaped) and the titles at `font_size` px (titles 2 px more)."""
    fs = font_size
    widest = max((text_px(t, fs) for t in tick_labels), default=0.0)
    ticks = TICK_PAD + (widest + LINE * fs) * math.sin(math.radians(45))  # a -45 degree label's drop
    title = LINE * (fs + 2) + 6
    legend = LINE * fs + 14
    return StageGeometry(bars=8 * fs + 24, gap=ticks + title + 10, ticks=ticks, title=title, legend=legend,
                         top=legend + title + 8, bottom=ticks + 8)


def stage_figure(stages: Sequence[FilterStage], names: Callable[[list[int]], list[str]], top_n: int = 15,
                 font_size: int = BASE_FONT) -> go.Figure:
    """One row per pipeline stage: the `top_n` tokens in the order the previous stage ranked them (only
    tokens still in the running: after a filter cut the distribution to k tokens, the later rows have at
    most k bars), bars at this stage's probability; tokens this stage removed are grey ghosts at their previous probability,
    and a dashed line marks the cut-off. names(ids) -> token strings.

    Every row gets a fixed pixel budget (`stage_geometry`): its title sits in the gap above its bars, under
    the tick labels of the row above even when those are rotated, for any number of rows and at
    `font_size` (pass LECTURE_FONT in lecture mode). Tick labels longer than TICK_CHARS are shortened with
    an ellipsis; the hover text gives the whole token.

    stages[i].probs: (V,) float32 over the full vocabulary (zeros where filtered out).
    """
    if not stages:
        raise ValueError("no stages to draw")
    vocab = len(stages[0].probs)
    n = min(top_n, vocab)
    rows, prev = [], stages[0].probs
    for stage in stages:
        order = _ranked(prev, n)  # (<= n,) ids, ranked by the distribution this stage received
        pieces = names(order.tolist())
        rows.append((stage, order, prev, pieces))
        prev = stage.probs
    lay = stage_geometry([short(p) for _, _, _, pieces in rows for p in pieces], font_size)
    fig = make_subplots(rows=len(stages), cols=1, subplot_titles=[_stage_title(s, vocab) for s in stages],
                        vertical_spacing=lay.spacing(len(stages)))
    fig.update_annotations(font_size=font_size + 2)  # only the subplot titles so far
    first_cut = _first_cut_row(stages, n)
    for row, (stage, order, before_all, pieces) in enumerate(rows, start=1):
        before, after = before_all[order], stage.probs[order]  # (n,), (n,)
        kept = after > 0
        ticks = unique([esc(short(p)) for p in pieces])
        full = [token_label(p) for p in pieces]
        fig.add_trace(go.Bar(x=ticks, y=np.where(kept, after, 0.0), marker_color=KEPT_COLOR, name="kept",
                             legendgroup="kept", showlegend=row == 1,
                             customdata=[[i, b, f] for i, b, f in zip(order.tolist(), before.tolist(), full)],
                             hovertemplate="%{customdata[2]} (id %{customdata[0]})<br>p = %{y:.4f}<br>"
                                           "before: %{customdata[1]:.4f}<extra></extra>"),
                      row=row, col=1)
        if (~kept).any():
            fig.add_trace(go.Bar(x=ticks, y=np.where(kept, 0.0, before), marker_color=CUT_COLOR, name="removed here",
                                 legendgroup="cut", showlegend=row == first_cut, customdata=full,
                                 hovertemplate="%{customdata}: removed (was %{y:.4f})<extra></extra>"),
                          row=row, col=1)
            k = int(kept.sum())
            if 0 < k and kept[:k].all():  # the stage kept a prefix of the ranking: draw the cut after it
                fig.add_vline(x=k - 0.5, line_dash="dash", line_color=PICK_COLOR, row=row, col=1)
    fig.update_layout(barmode="overlay", height=lay.height(len(stages)), font=dict(size=font_size),
                      margin=dict(t=round(lay.top), b=round(lay.bottom), l=50, r=10),
                      legend=dict(orientation="h", yref="container", y=1, yanchor="top", x=1, xanchor="right"))
    fig.update_xaxes(autotickangles=[0, -45], tickfont_size=font_size)  # flat, else -45: what the layout reserves
    fig.update_yaxes(title_text="p", rangemode="tozero")
    return fig


def _ranked(probs: np.ndarray, n: int) -> np.ndarray:
    """The ids of the `n` most probable tokens among those with p > 0 (tokens an earlier filter removed
    are not candidates any more: they are not drawn), best first, ties by id."""
    alive = np.flatnonzero(probs > 0)
    return alive[np.argsort(-probs[alive], kind="stable")][:n]


def _first_cut_row(stages: Sequence[FilterStage], n: int) -> int:
    prev = stages[0].probs
    for row, s in enumerate(stages, start=1):
        order = _ranked(prev, n)
        if (s.probs[order] <= 0).any():
            return row
        prev = s.probs
    return 0


def candidates_figure(candidates: Sequence[Prediction], pick: Prediction | None = None, title: str = "") -> go.Figure:
    """Bar chart of candidate tokens (best first); the picked token in red. Candidates the filters removed
    (p = 0) are left out."""
    candidates = [c for c in candidates if c.prob > 0 or (pick is not None and c.id == pick.id)]
    labels = unique([token_label(c.token) for c in candidates])
    colors = [PICK_COLOR if pick is not None and c.id == pick.id else KEPT_COLOR for c in candidates]
    fig = go.Figure(go.Bar(x=labels, y=[c.prob for c in candidates], marker_color=colors,
                           customdata=[c.id for c in candidates],
                           hovertemplate="%{x} (id %{customdata})<br>p = %{y:.4f}<extra></extra>"))
    fig.update_layout(title=title or None, height=280, margin=dict(t=40 if title else 10, b=20, l=40, r=10),
                      yaxis=dict(title="p", rangemode="tozero"))
    return fig


def step_table(steps: Sequence[GenerationStep], top: int = 3) -> list[dict]:
    """Rows for a table: step, picked token, its probability, and the runner-up candidates that survived
    the filters (p > 0)."""
    rows = []
    for i, s in enumerate(steps, start=1):
        others = [c for c in s.candidates if c.id != s.pick.id and c.prob > 0][:top]
        rows.append({"step": i, "token": show_token(s.pick.token), "p": round(s.pick.prob, 4),
                     "alternatives": ", ".join(f"{show_token(c.token)} {c.prob:.3f}" for c in others)})
    return rows



def generated_attention_figure(attn: np.ndarray, tokens: Sequence[Token], prompt_chars: int, title: str = "") -> go.Figure:
    """(N, N) attention map (rows = queries) over prompt + generated text; a line marks where generation
    began (the first token starting at or after character `prompt_chars`)."""
    n = len(tokens)
    if attn.shape != (n, n):
        raise ValueError(f"attention map is {attn.shape}, expected ({n}, {n})")
    labels = unique([token_label(t.text) for t in tokens])
    fig = go.Figure(go.Heatmap(z=attn, x=labels, y=labels, colorscale="Blues", zmin=0, zmax=float(np.nanmax(attn)) or 1.0,
                               hovertemplate="query %{y}<br>key %{x}<br>%{z:.3f}<extra></extra>"))
    first_gen = next((i for i, t in enumerate(tokens) if not t.special and t.start >= prompt_chars), None)
    if first_gen is not None and first_gen > 0:
        for kw in (dict(x0=first_gen - 0.5, x1=first_gen - 0.5, y0=-0.5, y1=n - 0.5),
                   dict(y0=first_gen - 0.5, y1=first_gen - 0.5, x0=-0.5, x1=n - 0.5)):
            fig.add_shape(type="line", line=dict(color=PICK_COLOR, dash="dash", width=1.5), **kw)
    fig.update_layout(title=title or None, height=max(320, min(900, 18 * n + 120)), margin=dict(t=40 if title else 10, l=10, r=10, b=10),
                      xaxis=dict(title="key (attended to)", tickangle=-60), yaxis=dict(title="query", autorange="reversed"))
    return fig
