"""The Generation page's beam-search tree: the path returned, the tree laid out as a tidy tree, its compact
form (only the final beams' ancestry, runs without a branch merged), and the figure.

    >>> fig = beam_tree_figure([BeamNode(0, -1, 0, "the", -1, 0.0, "kept"),
    ...                         BeamNode(1, 0, 1, "Ġcat", 7, -0.3, "finished")], best_path=[0, 1])
    >>> [t.name for t in fig.data][:2]
    ['edges', 'best path']
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import plotly.graph_objects as go

from app.figures.style import BASE_FONT, LINE, PICK_COLOR
from app.figures.text import TICK_CHARS, esc, fit, phrase, short, text_px, token_label
from model.results import BeamNode

STATUS_COLORS = {"kept": "#1f77b4", "pruned": "#c7c7c7", "ended": "#ff7f0e", "finished": "#2ca02c"}


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


def tree_layout(nodes: Sequence[BeamNode]) -> dict[int, float]:
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
    """The beam-search tree, laid out as a tidy tree (`tree_layout`): x = generation step, one row per
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
    y = tree_layout(nodes)
    by_id = {nd.id: nd for nd in nodes}
    steps = max(nd.step for nd in nodes)
    right = {nd.id for nd in nodes if compact and nd.step == steps and nd.parent in by_id and by_id[nd.parent].step == steps - 1}
    extra = 0.0  # steps of room right of the last one, for the labels written there
    if right:
        need = max(text_px(short(by_id[i].token), font_size) for i in right) + TREE_MARKER + 8
        extra = need * (steps + 0.6) / max(TREE_WIDTH_PX - need, 1.0)
    lay = tree_geometry(steps + extra, font_size)

    def text(nd: BeamNode) -> str:
        if nd.parent not in by_id:
            return ""
        if nd.id in right:
            return esc(short(nd.token))
        span = nd.step - by_id[nd.parent].step
        shown = phrase(nd.token) if compact and span > 1 else nd.token  # a merged run reads as a phrase
        room = span * lay.column - TREE_MARKER / 2 / 0.8 - 15  # px of branch left of the marker
        return esc(fit(shown, lay.label_chars(span), room, font_size))

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
            customdata=[[token_label(nd.token) if nd.parent != -1 else "prompt", nd.score, nd.id] for nd in sel],
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
