"""Figures of the Attention page: one head's map, the rollout, the all-heads overview, the head view's
lines, the weighted-token strip and the per-head summaries, from an `Inspection`.

Size rule for long inputs: a figure carries at most one N x N map (the selected head or the rollout);
the layer x head overview carries `THUMB`-pixel thumbnails, never all maps.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from app.figures.style import BASE_FONT, LINE, TICK_PAD, TRUTH_COLOR
from app.figures.text import text_px, token_label, token_labels
from model.results import Inspection, LayerAttention, Token

THUMB = 16  # thumbnail side in the layer x head overview: 12 x 12 heads x 16^2 = 37k values at any N
TITLE_PAD = 8  # px kept between the figure's top edge and a title
GRID_TITLE = ("All heads", "(tiles scaled to their own max)")  # the overview's title: name, explanation
GRID_WIDTH_PX = 320  # plot width the overview's labels are thinned for: the right-hand column at 1400 px


def attention_heatmap(insp: Inspection | LayerAttention, layer: int, head: int, selected: int | None = None) -> go.Figure:
    """One head's (N, N) map: rows are queries (who attends), columns keys (attended to); from a whole
    inspection or from the one layer computed first (the same figure).

    Only this head's map is in the figure. `selected` outlines that token's row and column.
    """
    z = insp.attention(layer, head)  # (query, key) float32, rows sum to 1
    # exactly 0 only where the model masks (causal future, outside a sliding window, padding): drawn blank
    z = np.where(np.asarray(z) == 0.0, np.nan, z)
    return _map_figure(z, insp.tokens, f"Layer {layer}, head {head}: attention from each token (row) to each token (column)",
                       selected, name="attention")


def kv_caption(num_heads: int, num_kv_heads: int, head: int) -> str | None:
    """The grouped-query attention note for the all-heads grid (None without GQA).

        >>> kv_caption(4, 2, 3)
        'Grouped-query attention: 4 query heads share 2 key/value heads; head 3 uses key/value head 1, with heads 2-3.'
    """
    if not num_kv_heads or num_kv_heads >= num_heads:
        return None
    g = num_heads // num_kv_heads
    kv = head // g
    return (f"Grouped-query attention: {num_heads} query heads share {num_kv_heads} key/value heads; head {head} uses "
            f"key/value head {kv}, with heads {kv * g}-{kv * g + g - 1}.")


def rollout_heatmap(insp: Inspection, selected: int | None = None) -> go.Figure:
    """Attention rollout (N, N): how much each input token flows into each position through all layers."""
    return _map_figure(insp.rollout(), insp.tokens, "Attention rollout over all layers (row: position, column: input token)",
                       selected, name="rollout")


def _map_figure(z: np.ndarray, tokens: Sequence[Token], title: str, selected: int | None, name: str) -> go.Figure:
    labels = token_labels(tokens)
    n = len(labels)
    fig = go.Figure(go.Heatmap(
        z=np.asarray(z, dtype=np.float32), x=labels, y=labels, colorscale="Blues", zmin=0.0, name=name,
        hovertemplate="from %{y}<br>to %{x}<br>weight %{z:.3f}<extra></extra>", colorbar=dict(title="weight"),
    ))
    side = int(min(1000, max(400, 14 * n + 230)))
    fig.update_layout(title=dict(text=title, y=0.995, yref="container", yanchor="top"), height=side,
                      margin=dict(l=10, r=10, t=130, b=10),
                      xaxis=dict(title="key (attended to)", side="top", tickangle=-60, type="category"),
                      yaxis=dict(title="query (attending)", autorange="reversed", type="category"))
    if selected is not None and 0 <= selected < n:
        for kw in (dict(x0=-0.5, x1=n - 0.5, y0=selected - 0.5, y1=selected + 0.5),
                   dict(x0=selected - 0.5, x1=selected + 0.5, y0=-0.5, y1=n - 0.5)):
            fig.add_shape(type="rect", line=dict(color=TRUTH_COLOR, width=2), fillcolor="rgba(0,0,0,0)", **kw)
    return fig


def pool_map(m: np.ndarray, size: int) -> np.ndarray:
    """Block-average an (N, N) map down to (s, s) with s = min(N, size); blocks differ by at most one row.

        >>> pool_map(np.eye(4), 2).tolist()
        [[0.5, 0.0], [0.0, 0.5]]
    """
    n = m.shape[-1]
    s = min(n, size)
    edges = np.linspace(0, n, s + 1).round().astype(int)[:-1]  # block starts
    counts = np.diff(np.append(edges, n)).astype(np.float32)  # (s,) rows per block
    rows = np.add.reduceat(m.astype(np.float32), edges, axis=-2) / counts[:, None]  # (s, N)
    return np.add.reduceat(rows, edges, axis=-1) / counts[None, :]  # (s, s)


def layer_thumbnails(insp: Inspection, size: int = THUMB) -> np.ndarray:
    """(L, H, s, s) float32: every head's map pooled to s = min(N, size), each scaled to its own max.

    Streams over the layers (one fp16 layer at a time), so it stays bounded at 512+ tokens.
    """
    out = []
    for layer in range(insp.num_layers):
        maps = insp.attention_layer(layer)  # (H, N, N) float16
        pooled = np.stack([pool_map(m, size) for m in maps])  # (H, s, s)
        out.append(pooled / np.maximum(pooled.max(axis=(1, 2), keepdims=True), 1e-9))
    return np.stack(out).astype(np.float32)


@dataclass(frozen=True)
class GridGeometry:
    """Pixel budget of `layer_head_grid`'s top margin, from the figure's top edge down: `pad`, the title
    (one line at `title_size` px), in lecture mode its explanation on a line of its own (`note`, at
    `font_size`), `gap`, then the band of column labels (h0, h1, ...) at `font_size` px just above the plot
    area, which starts `top` px (the top margin) below the edge. `head_step` / `layer_step`: every how many
    heads / layers a column / row label is written (1 = all)."""

    font_size: int
    title_size: int
    pad: float  # figure top -> title top
    title: float  # the title line's height
    note: float  # the explanation's line under the title and the air above it (0: it is on the title's line)
    gap: float  # title (or note) bottom -> column labels' top
    labels: float  # the column labels' band: their height + their standoff from the plot area
    left: float  # left margin: the row labels (L0, L1, ...) and their standoff
    plot: float  # plot-area height (px) before lecture mode's enlargement
    head_step: int
    layer_step: int

    @property
    def top(self) -> float:
        return self.pad + self.title + self.note + self.gap + self.labels


def grid_geometry(n_layers: int, n_heads: int, font_size: int = BASE_FONT) -> GridGeometry:
    """The layout of the L x H overview at `font_size` px (pass LECTURE_FONT in lecture mode): the title at
    4/3 of the type size (app.common.show's 24 px in lecture mode), in lecture mode with its explanation on
    a second line (one line is wider than the page's right-hand column there), room for the column labels
    under it, and labels thinned out (every 2nd, 3rd ... head / layer) where they would not fit side by side
    in a plot `GRID_WIDTH_PX` wide."""
    fs = int(font_size)
    title_size = round(fs * 4 / 3)
    units_w, units_h = max(1, n_heads * (THUMB + 1) - 1), max(1, n_layers * (THUMB + 1) - 1)  # at most
    # 34 px a layer (at least 200), but no taller than the square tiles get in a column 1.25 x GRID_WIDTH_PX
    # wide (no empty band beneath them when there are far more heads than layers)
    plot = float(min(820, max(60, min(max(200, 34 * n_layers), 1.25 * GRID_WIDTH_PX * units_h / units_w))))
    px_per_unit = min(GRID_WIDTH_PX / units_w, plot / units_h)  # tiles keep square (scaleanchor)
    label_w = text_px(f"h{n_heads - 1}", fs) + 4  # the widest column label plus some air
    head_step = max(1, math.ceil(label_w / ((THUMB + 1) * px_per_unit)))
    layer_step = max(1, math.ceil((LINE * fs + 2) / ((THUMB + 1) * px_per_unit)))
    return GridGeometry(font_size=fs, title_size=title_size, pad=TITLE_PAD, title=LINE * title_size,
                        note=LINE * fs + 6 if fs > BASE_FONT else 0.0, gap=6.0, labels=LINE * fs + TICK_PAD,
                        left=text_px(f"L{n_layers - 1}", fs) + TICK_PAD + 4, plot=plot,
                        head_step=head_step, layer_step=layer_step)


def layer_head_grid(thumbs: np.ndarray, selected: tuple[int, int] | None = None,
                    font_size: int = BASE_FONT) -> go.Figure:
    """All heads at a glance: an L x H grid of thumbnails (from `layer_thumbnails`) in ONE heatmap,
    tiles separated by empty (NaN) gaps; `selected` = (layer, head) is outlined.

    Layout (`grid_geometry`; pass `font_size=LECTURE_FONT` in lecture mode): the title's bottom is pinned
    `gap + labels` px (plus the note's line in lecture mode) above the plot area's top: paper y = 1, yanchor
    bottom, a px padding; the column labels sit in that band, and the top margin holds it all plus `pad`, so
    title and labels never overlap, whatever the height (lecture mode's 1.4x enlargement) or an automargin
    push. Each text is ONE line: plotly anchors a multi-line title by its first line only, so in lecture mode
    the explanation is an annotation of its own under the title. The y domain shrinks towards the top
    (square tiles), so the tiles hug the labels.
    """
    n_layers, n_heads, s, _ = thumbs.shape
    g = grid_geometry(n_layers, n_heads, font_size)
    step = s + 1
    big = np.full((n_layers * step - 1, n_heads * step - 1), np.nan, dtype=np.float32)  # (L*(s+1)-1, H*(s+1)-1)
    for layer in range(n_layers):
        for head in range(n_heads):
            big[layer * step:layer * step + s, head * step:head * step + s] = thumbs[layer, head]
    centers = lambda k, every: [i * step + (s - 1) / 2 for i in range(0, k, every)]  # noqa: E731
    fig = go.Figure(go.Heatmap(z=big, colorscale="Blues", zmin=0, zmax=1, showscale=False, hoverinfo="skip",
                               name="overview"))
    name, note = GRID_TITLE
    above = g.gap + g.labels  # px from the plot area's top to the bottom of the lowest title line
    bottom = 10
    fig.update_layout(
        title=dict(text=name if g.note else f"{name} {note}", x=0, xref="container", xanchor="left", y=1,
                   yref="paper", yanchor="bottom", pad=dict(b=above + g.note, l=10), font=dict(size=g.title_size),
                   automargin=False),
        font=dict(size=g.font_size),
        height=int(math.ceil(g.top + g.plot + bottom)),
        margin=dict(l=math.ceil(g.left), r=10, t=math.ceil(g.top), b=bottom),
        xaxis=dict(tickvals=centers(n_heads, g.head_step), ticktext=[f"h{h}" for h in range(0, n_heads, g.head_step)],
                   side="top", tickangle=0, ticks="", showgrid=False, zeroline=False, constrain="domain",
                   constraintoward="left"),
        yaxis=dict(tickvals=centers(n_layers, g.layer_step), ticktext=[f"L{l}" for l in range(0, n_layers, g.layer_step)],
                   autorange="reversed", tickangle=0, ticks="", showgrid=False, zeroline=False, scaleanchor="x",
                   constrain="domain", constraintoward="top"),
        plot_bgcolor="white",
    )
    if g.note:  # under the title, left-aligned with it (the left margin is g.left px; the title's pad 10 px)
        fig.add_annotation(text=note, xref="paper", yref="paper", x=0, y=1, xanchor="left", yanchor="bottom",
                           xshift=10 - g.left, yshift=above, showarrow=False, borderpad=0, name="title note")
    if selected is not None:
        layer, head = selected
        fig.add_shape(type="rect", x0=head * step - 1, x1=head * step + s, y0=layer * step - 1, y1=layer * step + s,
                      line=dict(color=TRUTH_COLOR, width=3))
    return fig


def head_lines(insp: Inspection, layer: int, head: int, top_k: int = 3, selected: int | None = None) -> go.Figure:
    """The head view: tokens in two columns (left: attending, right: attended to) joined by lines for
    each token's `top_k` strongest weights; darker lines carry more weight. With `selected`, only that
    token's lines are drawn: what it attends to (blue) and the top_k tokens attending most to it (orange)."""
    z = insp.attention(layer, head)  # (query, key) float32
    n = z.shape[0]
    k = max(1, min(top_k, n))
    segs: list[tuple[int, int, float, str]] = []  # (query, key, weight, kind)
    if selected is None:
        top = np.argsort(-z, axis=1)[:, :k]  # (query, k)
        segs = [(q, int(kk), float(z[q, kk]), "out") for q in range(n) for kk in top[q]]
    else:
        segs = [(selected, int(kk), float(z[selected, kk]), "out") for kk in np.argsort(-z[selected])[:k]]
        segs += [(int(q), selected, float(z[q, selected]), "in") for q in np.argsort(-z[:, selected])[:k]]
    fig = go.Figure()
    bins = [(0.0, 0.1), (0.1, 0.3), (0.3, 0.6), (0.6, 1.01)]  # plotly cannot vary opacity within one trace
    for kind, rgb in (("out", "33,113,181"), ("in", "230,85,13")):
        for lo, hi in bins:
            xs, ys = [], []
            for q, key, w, kd in segs:
                if kd == kind and lo <= w < hi:
                    xs += [0, 1, None]
                    ys += [q, key, None]
            if xs:
                fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", hoverinfo="skip", showlegend=False,
                                         line=dict(color=f"rgba({rgb},{0.15 + 0.85 * min(hi, 1.0):.2f})",
                                                   width=1 + 4 * lo), name=f"{kind} {lo:.1f}-{min(hi, 1):.1f}"))
    labels = [token_label(t.text, raw=True) for t in insp.tokens]
    colors = ["#000000" if selected is None or i == selected else "#555555" for i in range(n)]
    for x, anchor in ((0, "middle left"), (1, "middle right")):
        fig.add_trace(go.Scatter(x=[x] * n, y=list(range(n)), mode="text", text=labels, textposition=anchor,
                                 textfont=dict(color=colors), showlegend=False, name="tokens",
                                 hovertemplate="%{text}<extra></extra>"))
    who = f", token {selected} ({token_label(insp.tokens[selected].text, raw=True)})" if selected is not None else ""
    fig.update_layout(
        title=f"Head view, layer {layer} head {head}{who}: top {k} line(s) per token",
        height=int(min(4000, max(300, 18 * n + 80))), margin=dict(l=10, r=10, t=50, b=10), plot_bgcolor="white",
        xaxis=dict(range=[-0.6, 1.6], visible=False), yaxis=dict(autorange="reversed", visible=False),
    )
    return fig


def attends(insp: Inspection, layer: int, head: int, token: int) -> tuple[np.ndarray, np.ndarray]:
    """(N,), (N,): what `token` attends to (its row) and how much each token attends to it (its column)."""
    z = insp.attention(layer, head)  # (query, key)
    if not 0 <= token < z.shape[0]:
        raise ValueError(f"token {token} is out of range: the input has tokens 0..{z.shape[0] - 1}")
    return z[token].copy(), z[:, token].copy()


def weighted_tokens_html(tokens: Sequence[Token], weights: np.ndarray, selected: int | None = None,
                         rgb: str = "33,113,181") -> str:
    """Tokens as inline pieces whose background darkens with weight (scaled to the max); escaped."""
    w = np.asarray(weights, dtype=np.float32)
    top = float(w.max()) if w.size and w.max() > 0 else 1.0
    parts = []
    for i, (t, v) in enumerate(zip(tokens, w)):
        border = "2px solid #e6550d" if i == selected else "1px solid #bbb"
        parts.append(f'<span title="{i}: {float(v):.3f}" style="background: rgba({rgb},{float(v) / top:.2f}); '
                     f'border: {border}; border-radius: 3px; padding: 1px 3px; margin: 1px; display: inline-block; '
                     f'color: {"#fff" if float(v) / top > 0.6 else "#000"}">{token_label(t.text, raw=True)}</span>')
    return '<div style="line-height: 2">' + "".join(parts) + "</div>"


def head_summary_table(insp: Inspection) -> pd.DataFrame:
    """One row per head: entropy (nats, and as a share of the uniform maximum), mean distance (tokens),
    share of attention on special tokens. Empty when the model has no attention."""
    s = insp.head_summary
    cols = ["layer", "head", "entropy", "entropy / max", "distance", "special share"]
    if s is None:
        return pd.DataFrame(columns=cols)
    n_layers, n_heads = s.entropy.shape
    layer, head = np.meshgrid(np.arange(n_layers), np.arange(n_heads), indexing="ij")  # (L, H) each
    return pd.DataFrame({
        "layer": layer.ravel(), "head": head.ravel(),
        "entropy": s.entropy.ravel().round(3),
        "entropy / max": (s.entropy / np.maximum(s.max_entropy, 1e-9)).ravel().round(3),
        "distance": s.distance.ravel().round(2),
        "special share": s.special_share.ravel().round(3),
    }, columns=cols)


def head_summary_heatmaps(insp: Inspection) -> go.Figure:
    """Entropy share, distance and special share as three small L x H heatmaps side by side."""
    from plotly.subplots import make_subplots

    s = insp.head_summary
    if s is None:
        raise ValueError(insp.unavailable.get("attention", "this model has no attention"))
    panels = [("entropy / max", s.entropy / np.maximum(s.max_entropy, 1e-9)), ("distance (tokens)", s.distance),
              ("special share", s.special_share)]
    fig = make_subplots(rows=1, cols=3, subplot_titles=[p[0] for p in panels], horizontal_spacing=0.08)
    for i, (name, z) in enumerate(panels):
        fig.add_trace(go.Heatmap(z=z, colorscale="Viridis", showscale=False, name=name,
                                 hovertemplate="layer %{y} head %{x}: %{z:.3f}<extra>" + name + "</extra>"), 1, i + 1)
        fig.update_yaxes(autorange="reversed", title="layer" if i == 0 else None, row=1, col=i + 1)
        fig.update_xaxes(title="head", row=1, col=i + 1)
    fig.update_layout(height=int(min(600, 26 * s.entropy.shape[0] + 140)), margin=dict(l=10, r=10, t=60, b=10))
    return fig
