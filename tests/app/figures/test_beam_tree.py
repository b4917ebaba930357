"""app/figures/beam_tree.py on real beam searches of a tiny GPT-2 and on synthetic trees: the best path, the
tidy layout, the compact tree, and the figure's pixel geometry at both type sizes."""
from __future__ import annotations

import html

import pytest

from app.figures import beam_tree as F, style
from app.figures.text import phrase, token_label
from figure_helpers import PIECES, em_width
from model.generate import generate


@pytest.fixture(scope="module")
def gpt2(models):
    return models["gpt2"]


def test_beam_tree_figure(gpt2):
    r = generate(gpt2, "the dogs", strategy="beam", num_beams=3, max_new_tokens=4)
    path = F.best_path(r.beam_tree, [i for _, i in r.tokens])
    assert len(path) == len(r.tokens) + 1 and path[0] == 0
    by_id = {n.id: n for n in r.beam_tree}
    assert [by_id[i].token_id for i in path[1:]] == [i for _, i in r.tokens]
    assert by_id[path[-1]].status == "finished"
    fig = F.beam_tree_figure(r.beam_tree, path)
    markers = [t for t in fig.data if t.mode == "markers+text"]
    assert sum(len(t.x) for t in markers) == len(r.beam_tree)
    assert {t.name for t in markers} == {n.status for n in r.beam_tree}
    # the layout: every parent sits within the span of its children
    y = F.tree_layout(r.beam_tree)
    for n in r.beam_tree:
        kids = [y[c.id] for c in r.beam_tree if c.parent == n.id]
        if kids:
            assert min(kids) <= y[n.id] <= max(kids)
    assert len(set(y[n.id] for n in r.beam_tree if not any(c.parent == n.id for c in r.beam_tree))) == \
        sum(1 for n in r.beam_tree if not any(c.parent == n.id for c in r.beam_tree))  # leaves never overlap
    with pytest.raises(ValueError, match="beam"):
        F.beam_tree_figure([])


def wide_tree(fanout: int = 6, depth: int = 3) -> list:
    """A synthetic beam tree: every kept node has `fanout` children (the best kept, the rest pruned), long
    and repeated tokens included; the last level ends, its best finished."""
    from model.results import BeamNode

    nodes = [BeamNode(0, -1, 0, "prompt", -1, 0.0, "kept")]
    frontier = [0]
    for step in range(1, depth + 1):
        nxt = []
        for parent in frontier:
            for j in range(fanout):
                status = ("kept" if j < 2 else "pruned") if step < depth else ("finished" if j == 0 and not nxt else "ended")
                nd = BeamNode(len(nodes), parent, step, PIECES[(parent + j) % len(PIECES)], j, -0.5 * step - 0.1 * j, status)
                nodes.append(nd)
                if status == "kept":
                    nxt.append(nd.id)
        frontier = nxt
    return nodes


def check_tree_geometry(fig, nodes, font: int, compact: bool = False) -> None:
    """The beam tree's pixel geometry: rows far enough apart for a label over a branch, labels narrower than
    a step, branches drawn as elbows (no slanted line through a label), hover text with everything."""
    y = F.tree_layout(nodes)
    by_step: dict[int, list[float]] = {}
    for n in nodes:
        by_step.setdefault(n.step, []).append(y[n.id])
    for step, ys in by_step.items():  # one step's nodes never share a row or sit closer than one row
        ys.sort()
        assert all(b - a >= 1 for a, b in zip(ys, ys[1:])), (step, ys)
    lo, hi = fig.layout.yaxis.range
    plot_h = fig.layout.height - fig.layout.margin.t - fig.layout.margin.b
    row_px = plot_h / (hi - lo)  # px per layout row
    assert row_px >= 1.2 * font + F.TREE_MARKER + 2, row_px  # a line of text plus a marker, and air
    assert hi * row_px >= 1.2 * font + F.TREE_MARKER / 2  # the first row's labels fit above it
    assert lo <= -max(y.values()) - 0.3 and fig.layout.yaxis.fixedrange
    x0, x1 = fig.layout.xaxis.range
    step_px = F.TREE_WIDTH_PX / (x1 - x0)
    markers = [t for t in fig.data if t.mode == "markers+text"]
    assert sum(len(t.x) for t in markers) == len(nodes)
    by_id = {n.id: n for n in nodes}
    for t in markers:
        positions = [t.textposition] * len(t.x) if isinstance(t.textposition, str) else list(t.textposition)
        assert "%{customdata[0]}" in t.hovertemplate and "log p" in t.hovertemplate and t.name in t.hovertemplate
        for text, (full, score, node), pos in zip(t.text, t.customdata, positions):
            n = by_id[node]
            assert full == (token_label(n.token) if n.parent != -1 else "prompt") and score == n.score
            span = n.step - by_id[n.parent].step if n.parent in by_id else 1  # steps the branch to it spans
            if pos == "middle right":  # compact trees: a last step's label, right of its marker, in added room
                assert compact and n.step == max(m.step for m in nodes)
                assert (x1 - n.step) * step_px >= em_width(text) * font + F.TREE_MARKER, text
            else:  # on the branch that leads to the node, left of its marker
                assert pos == "top left"
                assert em_width(text) * font + F.TREE_MARKER < span * step_px, text  # the label fits its branch
            if compact and span > 1:  # a merged run: the phrase its pieces spell
                assert html.unescape(text).rstrip("…") in phrase(n.token)
            else:
                assert html.unescape(text).rstrip("…") in html.unescape(full) or n.parent == -1
    for trace in fig.data[:2]:  # the edges and the best path: only horizontal and vertical segments
        pts = list(zip(trace.x, trace.y))
        for (ax, ay), (bx, by) in zip(pts, pts[1:]):
            if None not in (ax, ay, bx, by):
                assert ax == bx or ay == by, ((ax, ay), (bx, by))


@pytest.mark.parametrize("font", [style.BASE_FONT, style.LECTURE_FONT])
def test_beam_tree_rows_leave_room_for_labels(gpt2, font):
    r = generate(gpt2, "the dogs", strategy="beam", num_beams=3, max_new_tokens=4)
    path = F.best_path(r.beam_tree, [i for _, i in r.tokens])
    check_tree_geometry(F.beam_tree_figure(r.beam_tree, path, font_size=font), r.beam_tree, font)
    tree = wide_tree()
    fig = F.beam_tree_figure(tree, [0, 1, 7, 19], font_size=font)
    check_tree_geometry(fig, tree, font)
    best = fig.data[1]
    assert (best.x[-1], best.y[-1]) == (3, -F.tree_layout(tree)[19])  # the thick line ends on the finished leaf
    deep = wide_tree(fanout=3, depth=12)  # 12 steps: labels shortened to fit, hover keeps them whole
    check_tree_geometry(F.beam_tree_figure(deep, font_size=font), deep, font)


@pytest.mark.parametrize("font", [style.BASE_FONT, style.LECTURE_FONT])
def test_compact_beam_tree_is_the_final_beams_ancestry_and_readable(gpt2, font):
    """20 tokens x 4 beams (the page's defaults): the compact tree keeps every returned hypothesis and the
    beams alive at the end with their whole ancestry, merges runs without a branch into phrases, and is a
    fraction of the full tree's height; its labels pass the same geometry check."""
    r = generate(gpt2, "the dogs", strategy="beam", num_beams=4, max_new_tokens=20)
    path = F.best_path(r.beam_tree, [i for _, i in r.tokens])
    full = F.beam_tree_figure(r.beam_tree, path, font_size=font)
    nodes = F.compact_tree(r.beam_tree, path)
    by_id = {n.id: n for n in nodes}
    assert all(n.parent in by_id for n in nodes if n.parent != -1)  # a tree: every parent kept
    assert {n.id for n in r.beam_tree if n.status == "finished"} <= set(by_id) and path[-1] in by_id
    last = max(n.step for n in r.beam_tree)
    assert {n.id for n in r.beam_tree if n.step == last and n.status != "pruned"} <= set(by_id)
    assert not any(n.status == "pruned" for n in nodes)
    original = {n.id: n for n in r.beam_tree}
    for n in nodes:  # a merged node spells its run: the tokens from its parent (exclusive) down to it
        run, i = [], n.id
        while i != n.parent:
            run.append(original[i].token)
            i = original[i].parent
        assert n.token == "".join(reversed(run))
    fig = F.beam_tree_figure(nodes, path, font_size=font, compact=True)
    check_tree_geometry(fig, nodes, font, compact=True)
    assert fig.layout.height < full.layout.height / 3, (fig.layout.height, full.layout.height)
    best = fig.data[1]  # the best path still ends on the returned hypothesis
    assert (best.x[-1], best.y[-1]) == (by_id[path[-1]].step, -F.tree_layout(nodes)[path[-1]])
    tree = wide_tree(fanout=3, depth=12)  # synthetic: long, wide (CJK) and markup tokens, pruned ones dropped
    small = F.compact_tree(tree)
    assert not any(n.status == "pruned" for n in small) and len(small) < len(tree)
    check_tree_geometry(F.beam_tree_figure(small, font_size=font, compact=True), small, font, compact=True)


def test_tree_geometry_check_catches_crowded_rows():
    """The check above fails on the layout this tree used to have (22 px a row, labels over the markers)."""
    tree = wide_tree()
    fig = F.beam_tree_figure(tree)
    rows = max(F.tree_layout(tree).values()) + 1
    fig.update_layout(height=22 * (rows + 1), margin=dict(t=30, b=30))
    with pytest.raises(AssertionError):
        check_tree_geometry(fig, tree, style.BASE_FONT)


def test_beam_tree_layout_is_iterative():
    from model.results import BeamNode

    chain = [BeamNode(0, -1, 0, "p", -1, 0.0, "kept")] + [BeamNode(i, i - 1, i, "a", 5, -0.1 * i, "kept") for i in range(1, 3000)]
    y = F.tree_layout(chain)
    assert set(y.values()) == {0.0}
