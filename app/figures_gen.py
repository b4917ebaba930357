"""Figures for the Generation, Compare, Train and Export pages: pure functions from plain result objects
(`model.results`, events dicts, numpy arrays) to plotly figures or escaped HTML. No Streamlit, no torch.

    >>> fig = beam_tree_figure([BeamNode(0, -1, 0, "the", -1, 0.0, "kept"),
    ...                         BeamNode(1, 0, 1, "Ġcat", 7, -0.3, "finished")], best_path=[0, 1])
    >>> [t.name for t in fig.data][:2]
    ['edges', 'best path']

Conventions: probabilities are in [0, 1]; surprisal is in bits (p = 2 ** -bits); NaN means "undefined
here" (special tokens, the first token of a causal model) and is drawn as a gap, never as zero.
"""
from __future__ import annotations

import html
import math
import unicodedata
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app.figures import BASE_FONT, LECTURE_FONT  # noqa: F401  (callers pass them as font_size)
from model.results import BeamNode, FilterStage, GenerationStep, LogitLens, Prediction, Token

KEPT_COLOR = "#1f77b4"  # plotly blue: tokens still in the running
CUT_COLOR = "#c7c7c7"  # grey: removed by this stage
PICK_COLOR = "#d62728"  # red: the sampled / chosen token
STATUS_COLORS = {"kept": "#1f77b4", "pruned": "#c7c7c7", "ended": "#ff7f0e", "finished": "#2ca02c"}
PROB_SCALE = "Viridis"  # perceptually uniform and readable in grey print
# Viridis with a light grey slot just below 0 for "no prediction here" (NaN is passed as -1)
NAN_GREY_VIRIDIS = [[0.0, "#eeeeee"], [0.009, "#eeeeee"], [0.0099, "#440154"], [0.25, "#3b528b"], [0.5, "#21918c"],
                    [0.75, "#5ec962"], [1.0, "#fde725"]]
STAGE_TITLES = {"input": "model distribution", "repetition_penalty": "repetition penalty",
                "temperature": "temperature", "top_k": "top-k", "top_p": "top-p (nucleus)",
                "typical_p": "typical-p", "min_p": "min-p"}
LINE = 1.3  # a line of text is this many font sizes tall
TICK_PAD = 8  # px between an axis and its tick labels, and around them
TICK_CHARS = 14  # longer token tick labels are shortened (the hover text keeps the whole token)
MAX_CHAR_TICKS = 80  # the aligned figure labels each character up to this many, else shows offsets
LENS_TEXT_TOKENS = 64  # the logit lens writes each cell's top guess up to this many tokens (else hover only)


def show_token(piece: str) -> str:
    """A token as text a reader can see: byte-level BPE's `Ġ` space and `Ċ` newline marked, others as is.

    >>> show_token("Ġcat"), show_token("Ċ"), show_token("##ing")
    ('␣cat', '⏎', '##ing')
    """
    return piece.replace("Ġ", "␣").replace("Ċ", "⏎").replace("\n", "⏎").replace("▁", "␣") or "∅"


def plotly_text(text: str) -> str:
    """Text escaped once for plotly, which renders a subset of HTML in labels (`<b>` must stay text) but
    decodes only a few named entities: quotes stay quotes (`&quot;` would be shown as is).

    >>> plotly_text('<b>"hi"</b> & 1')
    '&lt;b&gt;"hi"&lt;/b&gt; &amp; 1'
    """
    return html.escape(text, quote=False)


def label(piece: str) -> str:
    """`show_token`, escaped for plotly (`plotly_text`).

    >>> label("<b>"), label('"')
    ('&lt;b&gt;', '"')
    """
    return plotly_text(show_token(piece))


def phrase(pieces: str) -> str:
    """Joined token pieces as the text they spell: word-start markers become spaces (the first dropped).

    >>> phrase("ĠsingĠ.Ġthe" + "y")
    'sing . they'
    """
    return pieces.replace("Ġ", " ").replace("▁", " ").replace("Ċ", "⏎").strip() or show_token(pieces)


def _unique(labels: Sequence[str]) -> list[str]:
    """Category labels must be unique on a plotly axis: repeat pieces get invisible suffixes (zero-width spaces)."""
    seen: dict[str, int] = {}
    out = []
    for s in labels:
        n = seen.get(s, 0)
        seen[s] = n + 1
        out.append(s + "\u200b" * n)
    return out


def _short(piece: str, limit: int = 0) -> str:
    """`show_token`, cut to `limit` characters (TICK_CHARS if 0) with an ellipsis; not escaped.

    >>> _short("Ġinternationally", 8)
    '␣intern…'
    """
    s = show_token(piece)
    limit = limit or TICK_CHARS
    return s if len(s) <= limit else s[:max(1, limit - 1)] + "…"


def _fit(piece: str, limit: int, room: float, size: float) -> str:
    """`_short(piece, k)` for the largest k <= limit whose text fits `room` px at `size` (at least one
    character and the ellipsis): wide (CJK) characters take two narrow ones' room."""
    for k in range(limit, 1, -1):
        s = _short(piece, k)
        if _text_px(s, size) <= room:
            return s
    return _short(piece, 2)


def _text_px(text: str, size: float) -> float:
    """A generous estimate of `text`'s rendered width in px at font `size` (plotly's sans-serif): wide
    (CJK) characters 1 em, others 0.62 em (wider than the average Latin letter)."""
    return size * sum(1.0 if unicodedata.east_asian_width(c) in "WF" else 0.0 if c == "\u200b" else 0.62 for c in text)


# ---------------------------------------------------------------------------------------------------
# Generation: the sampling pipeline stage by stage


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
    widest = max((_text_px(t, fs) for t in tick_labels), default=0.0)
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
    lay = stage_geometry([_short(p) for _, _, _, pieces in rows for p in pieces], font_size)
    fig = make_subplots(rows=len(stages), cols=1, subplot_titles=[_stage_title(s, vocab) for s in stages],
                        vertical_spacing=lay.spacing(len(stages)))
    fig.update_annotations(font_size=font_size + 2)  # only the subplot titles so far
    first_cut = _first_cut_row(stages, n)
    for row, (stage, order, before_all, pieces) in enumerate(rows, start=1):
        before, after = before_all[order], stage.probs[order]  # (n,), (n,)
        kept = after > 0
        ticks = _unique([plotly_text(_short(p)) for p in pieces])
        full = [label(p) for p in pieces]
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
    labels = _unique([label(c.token) for c in candidates])
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


# ---------------------------------------------------------------------------------------------------
# Beam search tree


def best_path(nodes: Sequence[BeamNode], token_ids: Sequence[int]) -> list[int]:
    """Node ids from the root along the returned tokens (children of one node have distinct tokens)."""
    children: dict[int, dict[int, int]] = {}
    for nd in nodes:
        children.setdefault(nd.parent, {})[nd.token_id] = nd.id
    roots = [nd.id for nd in nodes if nd.parent == -1]
    if not roots:
        return []
    path = [roots[0]]
    for t in token_ids:
        nxt = children.get(path[-1], {}).get(int(t))
        if nxt is None:
            break
        path.append(nxt)
    return path


def _tree_layout(nodes: Sequence[BeamNode]) -> dict[int, float]:
    """Row per node (a tidy tree): every leaf gets a row of its own, in depth-first order (children best
    score first), and every parent sits halfway between its first and last child. Nodes of one step are
    therefore at least one row apart (their leaf spans are disjoint)."""
    kids: dict[int, list[BeamNode]] = {}
    for nd in nodes:
        kids.setdefault(nd.parent, []).append(nd)
    for v in kids.values():
        v.sort(key=lambda nd: -nd.score)
    y: dict[int, float] = {}
    leaves = 0
    stack = [(nd, False) for nd in reversed(kids.get(-1, []))]  # iterative post-order: trees can be 1024 deep
    while stack:
        nd, expanded = stack.pop()
        ch = kids.get(nd.id, [])
        if not ch:
            y[nd.id], leaves = float(leaves), leaves + 1
        elif expanded:
            y[nd.id] = (y[ch[0].id] + y[ch[-1].id]) / 2
        else:
            stack.append((nd, True))
            stack += [(c, False) for c in reversed(ch)]
    return y


TREE_MARKER = 9  # marker diameter (px)
TREE_WIDTH_PX = 760  # the narrowest plot width the labels are shortened for (the page's is ~850 px at 1400 px)


@dataclass(frozen=True)
class TreeGeometry:
    """Pixel budget of the beam tree: `row` px between rows, labels of at most `chars` characters (sized
    so a label fits between its marker and the column before), `top`/`bottom` margins."""

    row: float
    chars: int
    top: float
    bottom: float
    pad_above: float  # rows of room above the first row (its labels) ...
    pad_below: float  # ... and under the last one
    column: float = 0.0  # px between two steps
    font: int = BASE_FONT

    def height(self, rows: int) -> int:
        return int(math.ceil(self.top + self.bottom + self.row * (rows - 1 + self.pad_above + self.pad_below)))

    def label_chars(self, span: int) -> int:
        """Characters a label may have on a branch `span` steps long (`chars` for one step)."""
        if span <= 1 or not self.column:
            return self.chars
        r = TREE_MARKER / 2 / 0.8 + 1
        return int(max(self.chars, min(TICK_CHARS * span, (span * self.column - r - 14) // (0.62 * self.font))))


def tree_geometry(steps: float, font_size: int = BASE_FONT, width_px: float = TREE_WIDTH_PX) -> TreeGeometry:
    """Each label is written above the branch that leads to its node, ending just left of the marker
    (textposition "top left": plotly puts it r = radius / 0.8 + 1 px from the centre): a row must hold the
    label (about 1.05 em over its baseline, which is r + 0.25 em above the centre), the thick best-path line
    of the row above (2 px) and some air."""
    fs = font_size
    r = TREE_MARKER / 2 / 0.8 + 1
    row = math.ceil(r + 1.3 * fs + 8)
    column = width_px / (steps + 0.6)  # px between two steps; the x range is [-0.3, steps + 0.3]
    chars = int(max(3, min(TICK_CHARS, (column - r - 14) // (0.62 * fs))))
    return TreeGeometry(row=row, chars=chars, top=LINE * fs + 20, bottom=2 * LINE * fs + 30, pad_above=1.0, pad_below=0.6,
                        column=column, font=fs)


def compact_tree(nodes: Sequence[BeamNode], best_path: Sequence[int] = ()) -> list[BeamNode]:
    """The part of a beam-search tree a reader can follow: only the ancestry of the final beams (returned
    hypotheses, the beams still alive at the last step, and the best path), and every run of tokens
    without a branch merged into one node (its tokens joined, its last node's id, step, score and status),
    so each label says a phrase instead of one shortened token. Pruned and ended side branches are left
    out: `beam_tree_figure(nodes)` of the full list draws them.

    >>> t = [BeamNode(0, -1, 0, "p", -1, 0.0, "kept"), BeamNode(1, 0, 1, "Ġa", 1, -1.0, "kept"),
    ...      BeamNode(2, 0, 1, "Ġb", 2, -2.0, "pruned"), BeamNode(3, 1, 2, "Ġcat", 3, -1.5, "finished")]
    >>> [(n.id, n.parent, n.token) for n in compact_tree(t)]
    [(0, -1, 'p'), (3, 0, 'ĠaĠcat')]
    """
    if not nodes:
        return []
    by_id = {nd.id: nd for nd in nodes}
    last = max(nd.step for nd in nodes)
    ends = {nd.id for nd in nodes if nd.status == "finished" or (nd.step == last and nd.status != "pruned")}
    ends |= {i for i in best_path[-1:] if i in by_id}
    keep: set[int] = set()
    for i in ends:
        while i in by_id and i not in keep:
            keep.add(i)
            i = by_id[i].parent
    kids: dict[int, int] = {}
    for i in keep:
        kids[by_id[i].parent] = kids.get(by_id[i].parent, 0) + 1
    merged: dict[int, BeamNode] = {}
    for nd in sorted((by_id[i] for i in keep), key=lambda nd: (nd.step, nd.id)):  # parents first
        p = merged.get(nd.parent)
        if p is not None and p.parent != -1 and kids.get(nd.parent) == 1 and nd.parent not in ends:
            del merged[nd.parent]  # a run without a branch: the parent's tokens go into this node
            nd = BeamNode(nd.id, p.parent, nd.step, p.token + nd.token, nd.token_id, nd.score, nd.status)
        merged[nd.id] = nd
    return sorted(merged.values(), key=lambda nd: nd.id)


def beam_tree_figure(nodes: Sequence[BeamNode], best_path: Sequence[int] = (), font_size: int = BASE_FONT,
                     compact: bool = False) -> go.Figure:
    """The beam-search tree, laid out as a tidy tree (`_tree_layout`): x = generation step, one row per
    leaf, one marker per expanded hypothesis coloured by its fate (kept / pruned / ended / finished).
    Branches are drawn as elbows (down the parent's column, then along the child's row) and each token is
    written on the branch that leads to it, so labels never sit on a marker or on another branch; the
    returned best path is drawn thick. Labels are shortened to fit between two steps (`tree_geometry`); the
    hover text gives the whole token, its cumulative log-probability and its status. The figure is as tall
    as its rows need at `font_size` (pass LECTURE_FONT in lecture mode).

    compact: for `compact_tree`'s nodes: the last step's labels are written right of their markers, whole
    (up to TICK_CHARS), in room added right of the last step; a merged run's label may use every step
    its branch spans."""
    if not nodes:
        raise ValueError("no beam-search tree to draw (use the beam strategy)")
    y = _tree_layout(nodes)
    by_id = {nd.id: nd for nd in nodes}
    steps = max(nd.step for nd in nodes)
    right = {nd.id for nd in nodes if compact and nd.step == steps and nd.parent in by_id and by_id[nd.parent].step == steps - 1}
    extra = 0.0  # steps of room right of the last one, for the labels written there
    if right:
        need = max(_text_px(_short(by_id[i].token), font_size) for i in right) + TREE_MARKER + 8
        extra = need * (steps + 0.6) / max(TREE_WIDTH_PX - need, 1.0)
    lay = tree_geometry(steps + extra, font_size)

    def text(nd: BeamNode) -> str:
        if nd.parent not in by_id:
            return ""
        if nd.id in right:
            return plotly_text(_short(nd.token))
        span = nd.step - by_id[nd.parent].step
        shown = phrase(nd.token) if compact and span > 1 else nd.token  # a merged run reads as a phrase
        room = span * lay.column - TREE_MARKER / 2 / 0.8 - 15  # px of branch left of the marker
        return plotly_text(_fit(shown, lay.label_chars(span), room, font_size))

    def elbow(a: BeamNode, b: BeamNode) -> tuple[list, list]:
        return [a.step, a.step, b.step, None], [-y[a.id], -y[b.id], -y[b.id], None]

    ex, ey = [], []
    for nd in nodes:
        if nd.parent in by_id:
            xs, ys = elbow(by_id[nd.parent], nd)
            ex += xs
            ey += ys
    fig = go.Figure(go.Scatter(x=ex, y=ey, mode="lines", line=dict(color="#bbbbbb", width=1), name="edges",
                               hoverinfo="skip", showlegend=False))
    path = [i for i in best_path if i in by_id]
    px_, py_ = [], []
    for a, b in zip(path, path[1:]):
        xs, ys = elbow(by_id[a], by_id[b])
        px_ += xs[:-1]
        py_ += ys[:-1]
    fig.add_trace(go.Scatter(x=px_ or [by_id[i].step for i in path], y=py_ or [-y[i] for i in path], mode="lines",
                             line=dict(color=PICK_COLOR, width=4), name="best path", hoverinfo="skip"))
    for status, color in STATUS_COLORS.items():
        sel = [nd for nd in nodes if nd.status == status]
        if not sel:
            continue
        fig.add_trace(go.Scatter(
            x=[nd.step for nd in sel], y=[-y[nd.id] for nd in sel], mode="markers+text", name=status,
            marker=dict(color=color, size=TREE_MARKER, line=dict(color="#333", width=0.5)),
            text=[text(nd) for nd in sel],
            textposition=["middle right" if nd.id in right else "top left" for nd in sel] if right else "top left",
            textfont=dict(size=font_size),
            customdata=[[label(nd.token) if nd.parent != -1 else "prompt", nd.score, nd.id] for nd in sel],
            hovertemplate="<b>%{customdata[0]}</b><br>step %{x}: " + status
                          + "<br>cumulative log p = %{customdata[1]:.3f}<br>node %{customdata[2]}<extra></extra>"))
    rows = int(max(y.values())) + 1
    fig.update_layout(height=lay.height(rows), font=dict(size=font_size),
                      margin=dict(t=round(lay.top), b=round(lay.bottom), l=10, r=10),
                      xaxis=dict(title="step", tickmode="array", tickvals=list(range(steps + 1)),
                                 ticktext=["prompt"] + [str(i) for i in range(1, steps + 1)],
                                 range=[-0.3, steps + 0.3 + extra], showgrid=False, zeroline=False),
                      yaxis=dict(visible=False, range=[-(rows - 1) - lay.pad_below, lay.pad_above], fixedrange=True),
                      legend=dict(orientation="h", yref="container", y=1, yanchor="top", x=0, xanchor="left"))
    return fig


# ---------------------------------------------------------------------------------------------------
# Attention over prompt + generated tokens


def generated_attention_figure(attn: np.ndarray, tokens: Sequence[Token], prompt_chars: int, title: str = "") -> go.Figure:
    """(N, N) attention map (rows = queries) over prompt + generated text; a line marks where generation
    began (the first token starting at or after character `prompt_chars`)."""
    n = len(tokens)
    if attn.shape != (n, n):
        raise ValueError(f"attention map is {attn.shape}, expected ({n}, {n})")
    labels = _unique([label(t.text) for t in tokens])
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


# ---------------------------------------------------------------------------------------------------
# Compare: per-token probability of the actual token under several models


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
    lanes = _unique([html.escape(r.label) for r in rows])
    for lane, r in zip(lanes, rows):
        toks = [(t, p) for t, p in zip(r.tokens, r.probs) if not t.special and t.end > t.start]
        fig.add_trace(go.Bar(
            y=[lane] * len(toks), x=[t.end - t.start for t, _ in toks], base=[t.start for t, _ in toks],
            orientation="h", name=html.escape(r.label), showlegend=False,
            marker=dict(color=[(-1.0 if math.isnan(p) else p) for _, p in toks], colorscale=NAN_GREY_VIRIDIS,
                        cmin=-0.01, cmax=1, line=dict(color="white", width=1), showscale=lane == lanes[0],
                        colorbar=dict(title="p") if lane == lanes[0] else None),
            text=[label(t.text) for t, _ in toks], textposition="inside", insidetextanchor="middle",
            customdata=[[("n/a" if math.isnan(p) else f"{p:.4f}"), ("" if math.isnan(p) else f"{-math.log2(max(p, 1e-300)):.2f} bits")]
                        for _, p in toks],
            hovertemplate="%{text}<br>p = %{customdata[0]}<br>%{customdata[1]}<extra>" + html.escape(r.label) + "</extra>"))
    chars = list(text)
    if len(chars) <= MAX_CHAR_TICKS:  # short text: every character labels the axis
        xaxis = dict(tickmode="array", tickvals=[i + 0.5 for i in range(len(chars))],
                     ticktext=[html.escape(c) if c.strip() else "␣" for c in chars], title="input characters")
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
    fig = make_subplots(rows=len(rows), cols=1, subplot_titles=[f"{html.escape(r.label)}: {KIND_TEXT.get(r.kind, r.kind)}" for r in rows],
                        vertical_spacing=min(0.15, 0.6 / len(rows)))
    for i, r in enumerate(rows, start=1):
        sel = [(t, p) for t, p in zip(r.tokens, r.probs) if not t.special]
        labels = _unique([label(t.text) for t, _ in sel])
        fig.add_trace(go.Bar(x=labels, y=[None if math.isnan(p) else p for _, p in sel], name=html.escape(r.label), showlegend=False,
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
        parts.append(html.escape(text[pos:start]))
        if math.isnan(p):
            style, tip = "background:#eeeeee", f"{piece}: no prediction"
        else:
            alpha = min(1.0, max(0.0, -math.log2(max(p, 1e-12)) / 12))  # 12 bits or more = full colour
            style, tip = f"background:rgba(214,39,40,{alpha:.2f})", f"{piece}: p = {p:.4f} ({-math.log2(max(p, 1e-300)):.2f} bits)"
        parts.append(f'<span title="{html.escape(tip)}" style="{style};border-radius:3px;padding:1px 0">'
                     f"{html.escape(text[start:end])}</span>")
        pos = end
    parts.append(html.escape(text[pos:]))
    return '<div style="font-family:monospace;line-height:2;white-space:pre-wrap">' + "".join(parts) + "</div>"


def logit_lens_figure(lens: LogitLens, tokens: Sequence[Token], causal: bool) -> go.Figure:
    """Layer x token heatmap of the probability of the actual token (the next one for causal models, the
    input token itself for masked LMs), with each cell's top-1 token written in it (up to LENS_TEXT_TOKENS
    tokens; beyond, in the hover text only). Row 0 = embeddings."""
    layers, n = lens.actual_prob.shape  # (L + 1, N)
    if n != len(tokens):
        raise ValueError(f"the logit lens has {n} positions but there are {len(tokens)} tokens")
    xlabels = _unique([label(t.text) for t in tokens])
    ylabels = ["embeddings"] + [f"layer {i}" for i in range(1, layers)]
    top = [[label(lens.tokens[l][i][0]) for i in range(n)] for l in range(layers)]
    target = [label(tokens[i + 1].text) if causal and i + 1 < n else label(tokens[i].text) for i in range(n)]
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


# ---------------------------------------------------------------------------------------------------
# Training


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


@dataclass(frozen=True)
class Progress:
    """The latest numbers of a run, from its events."""

    step: int
    total_steps: int
    loss: float | None
    tokens_per_s: float | None
    eta_s: float | None
    heldout_loss: float | None
    perplexity: float | None
    accuracy: float | None
    status: str  # "waiting" (no events yet), "training", "evaluated", "done", "stopped", "error"

    @property
    def fraction(self) -> float:
        return min(1.0, self.step / self.total_steps) if self.total_steps else 0.0


def progress_of(events: Sequence[dict], total_steps: int = 0) -> Progress:
    """Summarise an events list (any prefix of a run's events.jsonl)."""
    step_ev = next((e for e in reversed(events) if e.get("type") == "step"), None)
    eval_ev = next((e for e in reversed(events) if e.get("type") == "eval"), None)
    last = events[-1]["type"] if events else "waiting"
    total = next((e["total_steps"] for e in reversed(events) if e.get("total_steps")), total_steps)
    status = {"start": "training", "resume": "training", "step": "training", "eval": "training",
              "checkpoint": "training"}.get(last, last)
    return Progress(step=int(events[-1].get("step", 0)) if events else 0, total_steps=int(total or 0),
                    loss=step_ev["loss"] if step_ev else None,
                    tokens_per_s=step_ev.get("tokens_per_s") if step_ev else None,
                    eta_s=step_ev.get("eta_s") if step_ev and status == "training" else None,
                    heldout_loss=eval_ev["loss"] if eval_ev else None,
                    perplexity=eval_ev.get("perplexity") if eval_ev else None,
                    accuracy=eval_ev.get("accuracy") if eval_ev else None, status=status)


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
        fig.add_trace(go.Scatter(x=steps, y=[by_step.get(s, 0.0) for s in steps], mode="lines+markers", name=label(tok)))
    if highlight is not None:
        fig.add_vline(x=highlight, line_dash="dot", line_color=PICK_COLOR)
    fig.update_layout(height=300, margin=dict(t=20, b=30, l=50, r=10), xaxis=dict(title="checkpoint step"),
                      yaxis=dict(title="p", range=[0, 1]))
    return fig
