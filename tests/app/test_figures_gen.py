"""Figures of the Generation / Compare / Train pages, drawn from real results of tiny models (and one real
tiny training run), checked against the numbers they were drawn from."""
from __future__ import annotations

import html
import math
import re

import numpy as np
import pandas as pd
import pytest

from app import figures_gen as F
from model.generate import SamplingConfig, generate, next_token_distribution
from model.inspect import inspect
from model.load import load_model
from model.results import Prediction


@pytest.fixture(scope="module")
def gpt2(tiny_models):
    return load_model(tiny_models["gpt2"])


@pytest.fixture(scope="module")
def bert(tiny_models):
    return load_model(tiny_models["bert-mlm"])


def names_of(loaded):
    return lambda ids: loaded.tokenizer.convert_ids_to_tokens(ids)


def rows_of(fig, row_count):
    """Traces grouped by subplot row (xaxis 'x', 'x2', ...)."""
    out = {r: [] for r in range(1, row_count + 1)}
    for tr in fig.data:
        out[int(tr.xaxis[1:] or 1)].append(tr)
    return out


@pytest.mark.parametrize("cfg", [
    dict(temperature=0.7, top_k=5),
    dict(temperature=1.5, top_p=0.5, min_p=0.05),
    dict(repetition_penalty=1.3, typical_p=0.8),
])
def test_stage_figure_matches_the_pipeline(gpt2, cfg):
    stages, _ = next_token_distribution(gpt2, "the dogs near the", SamplingConfig(**cfg))
    fig = F.stage_figure(stages, names_of(gpt2), top_n=12)
    titles = [a.text for a in fig.layout.annotations]
    assert len(titles) == len(stages) == 1 + len(cfg)
    vocab = len(stages[0].probs)
    for title, s in zip(titles, stages):
        assert f"{s.kept} of {vocab} tokens kept" in title
    by_row = rows_of(fig, len(stages))
    prev = stages[0].probs
    for row, s in enumerate(stages, start=1):
        alive = np.flatnonzero(prev > 0)  # tokens an earlier stage removed are not drawn again
        order = alive[np.argsort(-prev[alive], kind="stable")][:12]
        kept_bar = by_row[row][0]
        assert [int(c[0]) for c in kept_bar.customdata] == order.tolist()
        first = gpt2.tokenizer.convert_ids_to_tokens(int(order[0]))
        assert kept_bar.customdata[0][2] == F.label(first)  # the hover text: the whole token
        assert kept_bar.x[0].replace("\u200b", "") == html.escape(F._short(first), quote=False)  # the tick: maybe shortened
        np.testing.assert_allclose(kept_bar.y, np.where(s.probs[order] > 0, s.probs[order], 0), rtol=1e-6)
        removed = s.probs[order] == 0
        if removed.any():  # ghosts stand at the probability the token had before this stage
            np.testing.assert_allclose(by_row[row][1].y, np.where(removed, prev[order], 0), rtol=1e-6)
        prev = s.probs
    if "top_k" in cfg:  # top-k keeps a prefix of the ranking: the cut sits after bar k
        assert any(sh.x0 == cfg["top_k"] - 0.5 for sh in fig.layout.shapes)


STAGE_NAMES = ["input", "repetition_penalty", "temperature", "top_k", "top_p", "typical_p", "min_p"]
# Token names for the synthetic stages: short, long (shortened on the axis), wide (CJK), markup (escaped).
PIECES = ["Ġthe", "Ġinternationalization", "Ġ日本語の単語", "<b>", "Ġcat", "##ing", "Ġa", "Ġextraordinarily"]


def synthetic_stages(n: int, vocab: int = 60, seed: int = 0) -> list:
    """`n` pipeline stages over a random distribution, each filter dropping a few of the best tokens'
    tail (so ghosts and cut-off lines appear)."""
    from model.results import FilterStage

    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.full(vocab, 0.3)).astype(np.float32)
    stages = [FilterStage("input", {}, probs, vocab)]
    for i, name in enumerate(STAGE_NAMES[1:n], start=1):
        p = stages[-1].probs.copy()
        p[np.argsort(-p)[15 - i:]] = 0  # keep the best 15 - i
        p /= p.sum()
        stages.append(FilterStage(name, {name: 0.5}, p, int((p > 0).sum())))
    return stages


def synthetic_names(ids):
    return [PIECES[i % len(PIECES)] for i in ids]


def em_width(text: str) -> float:
    """The test's own estimate of a label's width in em (not the figure's): CJK 1 em, others 0.6 em."""
    import unicodedata

    text = html.unescape(text.replace("\u200b", ""))
    return sum(1.0 if unicodedata.east_asian_width(c) in "WF" else 0.6 for c in text)


def check_stage_geometry(fig, font: int, scale: float = 1.0) -> None:
    """Pixel geometry of a stage chart `scale` times as tall as built (app.common.show makes lecture-mode
    figures 1.4 times taller): every subplot title sits on top of its own axis domain, under the room the
    row above needs for its tick labels (rotated -45 degrees, the most plotly is allowed to turn them),
    the first one under the legend, the last row's labels inside the bottom margin; bars keep real room."""
    titles = fig.layout.annotations
    rows = len(titles)
    height = fig.layout.height * scale
    top, bottom = fig.layout.margin.t, fig.layout.margin.b
    plot = height - top - bottom  # px of the plot area (paper y 0 -> 1)
    line = 1.2  # a line of text, in em

    def tick_room(row: int) -> float:  # px under axis `row` its tick labels may take
        labels = [tr.x for tr in fig.data if (tr.xaxis or "x") == ("x" if row == 1 else f"x{row}")][0]
        widest = max(em_width(t) for t in labels) * font
        return 3 + (widest + line * font) * math.sin(math.radians(45))

    assert tuple(fig.layout.xaxis.autotickangles) == (0, -45)
    assert fig.layout.legend.yref == "container" and fig.layout.legend.y == 1 and fig.layout.legend.yanchor == "top"
    assert top >= line * (font + 2) + line * font + 8  # the legend's line, then row 1's title
    for row, title in enumerate(titles, start=1):
        d0, d1 = fig.layout[f"yaxis{row if row > 1 else ''}"].domain
        assert (d1 - d0) * plot >= 100, f"row {row}: bars squeezed to {(d1 - d0) * plot:.0f} px"
        assert title.yref == "paper" and title.yanchor == "bottom" and title.y == pytest.approx(d1)  # on its own axis
        assert title.font.size == font + 2
        title_top = d1 * plot + line * title.font.size
        if row > 1:
            p0 = fig.layout[f"yaxis{row - 1 if row > 2 else ''}"].domain[0]
            room = p0 * plot - title_top  # px between this title's top and the axis above
            assert room >= tick_room(row - 1) + 2, f"row {row}: title {room:.0f} px under the axis above, " \
                                                  f"its labels need {tick_room(row - 1):.0f}"
        else:
            assert title_top <= plot + top - (line * font + 8)  # under the legend
    assert bottom >= tick_room(rows)


@pytest.mark.parametrize("rows", range(1, 8))
@pytest.mark.parametrize("font", [F.BASE_FONT, F.LECTURE_FONT])
def test_stage_figure_gives_every_row_room_for_its_title_and_labels(rows, font):
    stages = synthetic_stages(rows)
    fig = F.stage_figure(stages, synthetic_names, top_n=15, font_size=font)
    assert len(fig.layout.annotations) == rows
    for scale in (1.0, 1.4):  # as built, and as app.common.show enlarges it in lecture mode
        check_stage_geometry(fig, font, scale)
    ticks = {t.replace("\u200b", "") for tr in fig.data for t in tr.x}
    assert max(len(html.unescape(t)) for t in ticks) <= F.TICK_CHARS  # long tokens are shortened on the axis...
    for row, traces in rows_of(fig, rows).items():  # ...the hover text keeps them whole (and escaped)
        ids = [int(c[0]) for c in traces[0].customdata]
        whole = [F.label(p) for p in synthetic_names(ids)]
        assert [c[2] for c in traces[0].customdata] == whole
        assert all(list(tr.customdata) == whole for tr in traces[1:])  # the ghosts' hover too
    assert any(len(F.show_token(p)) > F.TICK_CHARS for p in synthetic_names(ids))  # the case was exercised
    assert "%{customdata[2]}" in fig.data[0].hovertemplate


def test_stage_figure_geometry_on_the_full_pipeline(gpt2):
    cfg = SamplingConfig(temperature=0.8, top_k=40, top_p=0.9, typical_p=0.95, min_p=0.02, repetition_penalty=1.2)
    stages, _ = next_token_distribution(gpt2, "the dogs near the dogs", cfg)
    assert len(stages) == 7
    for font in (F.BASE_FONT, F.LECTURE_FONT):
        check_stage_geometry(F.stage_figure(stages, names_of(gpt2), font_size=font), font)


def test_stage_geometry_check_catches_a_squeezed_chart():
    """The check above fails on the layout this chart used to have (titles over the labels of the row above)."""
    fig = F.stage_figure(synthetic_stages(2), synthetic_names)
    fig.update_layout(height=380, margin=dict(t=40, b=20))  # the old fixed 190 px per row...
    fig.update_layout(yaxis=dict(domain=[0.56, 1.0]), yaxis2=dict(domain=[0, 0.44]))  # ...and 0.12 spacing
    fig.layout.annotations[0].y, fig.layout.annotations[1].y = 1.0, 0.44
    with pytest.raises(AssertionError):
        check_stage_geometry(fig, F.BASE_FONT)


def test_stage_figure_follows_temperature(gpt2):
    a = F.stage_figure(next_token_distribution(gpt2, "the cat", SamplingConfig(temperature=0.5))[0], names_of(gpt2))
    b = F.stage_figure(next_token_distribution(gpt2, "the cat", SamplingConfig(temperature=2.0))[0], names_of(gpt2))
    ya, yb = a.data[-1].y, b.data[-1].y  # the temperature row
    assert ya[0] > yb[0]  # a colder distribution puts more mass on its best token
    with pytest.raises(ValueError):
        F.stage_figure([], names_of(gpt2))


def test_stage_rows_after_a_cut_show_only_surviving_tokens_escaped_once():
    """After top-k keeps 3 tokens, the next rows draw those 3 (not 12 with zero-probability fillers), and a
    token spelled `"` is written as a quote, not `&quot;` (plotly shows that entity as is)."""
    from model.results import FilterStage

    vocab = 40
    probs = np.linspace(1.0, 0.1, vocab).astype(np.float32)
    probs /= probs.sum()
    top3 = np.where(np.arange(vocab) < 3, probs, 0).astype(np.float32)
    top3 /= top3.sum()
    hot = (top3 ** 2) / (top3 ** 2).sum()
    stages = [FilterStage("input", {}, probs, vocab), FilterStage("top_k", {"top_k": 3}, top3, 3),
              FilterStage("temperature", {"temperature": 0.5}, hot.astype(np.float32), 3)]
    names = lambda ids: ['"' if i == 1 else "<b>" if i == 2 else f"t{i}" for i in ids]  # noqa: E731
    fig = F.stage_figure(stages, names, top_n=12)
    rows = rows_of(fig, 3)
    assert len(rows[1][0].x) == 12 and len(rows[2][0].x) == 12  # the cut row shows what it removed (ghosts)
    assert len(rows[3][0].x) == 3 and len(rows[3]) == 1  # after the cut: the 3 survivors, no ghosts
    assert [t.replace("\u200b", "") for t in rows[3][0].x] == ["t0", '"', "&lt;b&gt;"]
    assert all("&quot;" not in t for tr in fig.data for t in tr.x)
    assert [c[2] for c in rows[3][0].customdata] == ["t0", '"', "&lt;b&gt;"]


def test_step_table_lists_only_alternatives_that_survived_the_filters():
    from model.results import GenerationStep

    step = GenerationStep(pick=Prediction("Ġcat", 5, 0.7),
                          candidates=[Prediction("Ġcat", 5, 0.7), Prediction("Ġdog", 6, 0.3), Prediction("$", 7, 0.0),
                                      Prediction("!", 8, 0.0)])
    (row,) = F.step_table([step])
    assert row["alternatives"] == "␣dog 0.300"
    fig = F.candidates_figure(step.candidates, step.pick)
    assert list(fig.data[0].x) == ["␣cat", "␣dog"]


def test_candidates_figure_marks_the_pick(gpt2):
    r = generate(gpt2, "the quick", strategy="sample", max_new_tokens=3, seed=1, top_k=8)
    for step in r.steps:
        fig = F.candidates_figure(step.candidates, step.pick)
        colors = list(fig.data[0].marker.color)
        assert [c.prob for c in step.candidates if c.prob > 0 or c.id == step.pick.id] == list(fig.data[0].y)
        shown = [c for c in step.candidates if c.prob > 0 or c.id == step.pick.id]
        picked = [i for i, c in enumerate(shown) if c.id == step.pick.id]
        assert [i for i, c in enumerate(colors) if c == F.PICK_COLOR] == picked
    rows = F.step_table(r.steps)
    assert [row["token"] for row in rows] == [F.show_token(s.pick.token) for s in r.steps]


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
    y = F._tree_layout(r.beam_tree)
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
    y = F._tree_layout(nodes)
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
            assert full == (F.label(n.token) if n.parent != -1 else "prompt") and score == n.score
            span = n.step - by_id[n.parent].step if n.parent in by_id else 1  # steps the branch to it spans
            if pos == "middle right":  # compact trees: a last step's label, right of its marker, in added room
                assert compact and n.step == max(m.step for m in nodes)
                assert (x1 - n.step) * step_px >= em_width(text) * font + F.TREE_MARKER, text
            else:  # on the branch that leads to the node, left of its marker
                assert pos == "top left"
                assert em_width(text) * font + F.TREE_MARKER < span * step_px, text  # the label fits its branch
            if compact and span > 1:  # a merged run: the phrase its pieces spell
                assert html.unescape(text).rstrip("…") in F.phrase(n.token)
            else:
                assert html.unescape(text).rstrip("…") in html.unescape(full) or n.parent == -1
    for trace in fig.data[:2]:  # the edges and the best path: only horizontal and vertical segments
        pts = list(zip(trace.x, trace.y))
        for (ax, ay), (bx, by) in zip(pts, pts[1:]):
            if None not in (ax, ay, bx, by):
                assert ax == bx or ay == by, ((ax, ay), (bx, by))


@pytest.mark.parametrize("font", [F.BASE_FONT, F.LECTURE_FONT])
def test_beam_tree_rows_leave_room_for_labels(gpt2, font):
    r = generate(gpt2, "the dogs", strategy="beam", num_beams=3, max_new_tokens=4)
    path = F.best_path(r.beam_tree, [i for _, i in r.tokens])
    check_tree_geometry(F.beam_tree_figure(r.beam_tree, path, font_size=font), r.beam_tree, font)
    tree = wide_tree()
    fig = F.beam_tree_figure(tree, [0, 1, 7, 19], font_size=font)
    check_tree_geometry(fig, tree, font)
    best = fig.data[1]
    assert (best.x[-1], best.y[-1]) == (3, -F._tree_layout(tree)[19])  # the thick line ends on the finished leaf
    deep = wide_tree(fanout=3, depth=12)  # 12 steps: labels shortened to fit, hover keeps them whole
    check_tree_geometry(F.beam_tree_figure(deep, font_size=font), deep, font)


@pytest.mark.parametrize("font", [F.BASE_FONT, F.LECTURE_FONT])
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
    assert (best.x[-1], best.y[-1]) == (by_id[path[-1]].step, -F._tree_layout(nodes)[path[-1]])
    tree = wide_tree(fanout=3, depth=12)  # synthetic: long, wide (CJK) and markup tokens, pruned ones dropped
    small = F.compact_tree(tree)
    assert not any(n.status == "pruned" for n in small) and len(small) < len(tree)
    check_tree_geometry(F.beam_tree_figure(small, font_size=font, compact=True), small, font, compact=True)


def test_tree_geometry_check_catches_crowded_rows():
    """The check above fails on the layout this tree used to have (22 px a row, labels over the markers)."""
    tree = wide_tree()
    fig = F.beam_tree_figure(tree)
    rows = max(F._tree_layout(tree).values()) + 1
    fig.update_layout(height=22 * (rows + 1), margin=dict(t=30, b=30))
    with pytest.raises(AssertionError):
        check_tree_geometry(fig, tree, F.BASE_FONT)


def test_beam_tree_layout_is_iterative():
    from model.results import BeamNode

    chain = [BeamNode(0, -1, 0, "p", -1, 0.0, "kept")] + [BeamNode(i, i - 1, i, "a", 5, -0.1 * i, "kept") for i in range(1, 3000)]
    y = F._tree_layout(chain)
    assert set(y.values()) == {0.0}


def test_generated_attention_figure(gpt2):
    prompt = "the dogs near"
    r = generate(gpt2, prompt, max_new_tokens=4)
    ins = inspect(gpt2, prompt + r.text)
    attn = ins.attention(1, 2)
    fig = F.generated_attention_figure(attn, ins.tokens, len(prompt))
    np.testing.assert_array_equal(fig.data[0].z, attn)
    first_gen = next(i for i, t in enumerate(ins.tokens) if t.start >= len(prompt))
    assert {sh.x0 for sh in fig.layout.shapes} >= {first_gen - 0.5}
    with pytest.raises(ValueError, match="expected"):
        F.generated_attention_figure(attn[:-1], ins.tokens, len(prompt))


def test_aligned_and_bar_figures_from_pll_and_causal(gpt2, bert):
    text = "the dogs near the cat run quickly."
    mlm = inspect(bert, text, pll=True)
    cau = inspect(gpt2, text)
    rows = [F.ProbRow("bert", mlm.tokens, F.bits_to_prob(mlm.surprisal), mlm.surprisal_kind),
            F.ProbRow("gpt2", cau.tokens, F.bits_to_prob(cau.surprisal), cau.surprisal_kind)]
    fig = F.aligned_figure(text, rows)
    assert len(fig.data) == 2
    for trace, r in zip(fig.data, rows):
        toks = [(t, p) for t, p in zip(r.tokens, r.probs) if not t.special]
        assert list(trace.base) == [t.start for t, _ in toks]
        assert list(trace.x) == [t.end - t.start for t, _ in toks]
        # each box spans exactly the characters of its token
        assert "".join(text[b:b + w] for b, w in zip(trace.base, trace.x)).replace(" ", "") == text.replace(" ", "")
        colors = np.array(trace.marker.color)
        probs = np.array([p for _, p in toks])
        np.testing.assert_allclose(colors[~np.isnan(probs)], probs[~np.isnan(probs)])
        assert (colors[np.isnan(probs)] == -1).all()
    # causal: nothing predicts the first token; PLL defines every non-special token
    assert math.isnan(rows[1].probs[0]) and not np.isnan(rows[0].probs[[not t.special for t in mlm.tokens]]).any()
    np.testing.assert_allclose(rows[0].probs[1], 2.0 ** -mlm.surprisal[1])
    bars = F.probability_bars(rows)
    assert "PLL" in bars.layout.annotations[0].text and "left" in bars.layout.annotations[1].text
    y = [v for v in bars.data[1].y]
    assert y[0] is None and y[1] == pytest.approx(float(rows[1].probs[1]))


def test_colored_tokens_html_escapes_and_keeps_the_text(gpt2):
    text = 'a <script>alert("x")</script> & b'
    ins = inspect(gpt2, text)
    out = F.colored_tokens_html(text, ins.tokens, F.bits_to_prob(ins.surprisal))
    assert set(re.findall(r"<(\w+)", out)) == {"div", "span"}  # the typed tag is text, not markup
    visible = html.unescape(re.sub(r"<[^>]+>", "", out))
    assert visible == text
    assert out.count("<span") == sum(1 for t in ins.tokens if not t.special and t.end > t.start)


@pytest.mark.parametrize("arch", ["gpt2", "bert-mlm"])
def test_logit_lens_figure(tiny_models, arch):
    m = load_model(tiny_models[arch])
    text = "the dogs near the cat"
    ins = inspect(m, text, logit_lens=True, pll=False)
    lens = ins.logit_lens
    causal = arch == "gpt2"
    fig = F.logit_lens_figure(lens, ins.tokens, causal=causal)
    hm = fig.data[0]
    assert len(hm.y) == lens.actual_prob.shape[0] == m.info.num_layers + 1
    z = np.array(hm.z, dtype=float)  # None -> nan
    np.testing.assert_allclose(z, lens.actual_prob, equal_nan=True, rtol=1e-6)
    assert hm.text[2][1] == F.label(lens.tokens[2][1][0])
    if causal:
        assert np.isnan(z[:, -1]).all()  # the last token has no next token to score
        assert hm.customdata[0][0][0] == F.label(ins.tokens[1].text)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A real tiny training run, in process: its events and checkpoints."""
    from model.train.trainer import TrainConfig, train

    out = tmp_path_factory.mktemp("run") / "gpt2"
    train(TrainConfig(arch="gpt2", corpus="pydoc", out_dir=str(out), steps=6, batch_size=4, seq_len=16,
                      eval_every=3, checkpoint_every=3, threads=1))
    from model.jobs import read_events
    from model.train.layout import complete_checkpoints

    return read_events(out), complete_checkpoints(out)


def test_loss_figure_and_progress_from_a_real_run(run):
    events, _ = run
    steps = [e for e in events if e["type"] == "step"]
    evals = [e for e in events if e["type"] == "eval"]
    fig = F.loss_figure(events)
    raw, smoothed, held = fig.data
    assert list(raw.x) == [e["step"] for e in steps] and list(raw.y) == [e["loss"] for e in steps]
    np.testing.assert_allclose(smoothed.y, pd.Series([e["loss"] for e in steps]).ewm(alpha=0.1, adjust=True).mean())
    assert list(held.x) == [3, 6] and list(held.y) == [e["loss"] for e in evals]
    assert fig.layout.shapes[0].y0 == pytest.approx(evals[-1]["unigram_loss"])
    p = F.progress_of(events)
    assert (p.step, p.total_steps, p.status, p.fraction) == (6, 6, "done", 1.0)
    assert p.loss == steps[-1]["loss"] and p.heldout_loss == evals[-1]["loss"] and p.eta_s is None
    mid = F.progress_of(events[:3])
    assert mid.status == "training" and mid.step == 2 and mid.eta_s == steps[1]["eta_s"] and mid.fraction == pytest.approx(2 / 6)
    assert F.progress_of([], total_steps=10).status == "waiting"


def test_subsampled_loss_keeps_the_last_point():
    events = [{"type": "step", "step": i, "loss": 1.0 / i, "total_steps": 5000} for i in range(1, 5001)]
    fig = F.loss_figure(events, max_points=100)
    assert len(fig.data[0].x) <= 101 and fig.data[0].x[-1] == 5000


def test_checkpoint_predictions_figure(run):
    _, cks = run
    rows = []
    for step, path in cks:
        m = load_model(path)
        ins = inspect(m, "the", top_k=5, summaries=False)
        ids, probs = ins.next_ids[-1], ins.next_probs[-1]
        rows.append((step, [Prediction(t, int(i), float(p)) for t, i, p in zip(ins.next_tokens[-1], ids, probs)]))
    fig = F.checkpoint_predictions_figure(rows, highlight=cks[-1][0])
    assert list(fig.data[0].x) == [s for s, _ in cks]
    best = rows[-1][1][0]
    line = next(t for t in fig.data if t.name == F.label(best.token))
    assert line.y[-1] == pytest.approx(best.prob)
    assert fig.layout.shapes[0].x0 == cks[-1][0]


def test_small_helpers():
    assert F.show_token("Ġthe") == "␣the" and F.show_token("") == "∅" and F.label("<i>") == "&lt;i&gt;"
    assert F._unique(["a", "a", "b"]) == ["a", "a\u200b", "b"]
    assert F.format_duration(59.6) == "1 min 0 s"
    np.testing.assert_allclose(F.bits_to_prob(np.array([1.0, np.nan])), [0.5, np.nan])
