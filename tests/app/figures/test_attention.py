"""app/figures/attention.py on real Inspections of tiny random models: shapes, labels, escaping, and
agreement with reference computations (numpy loops)."""
from __future__ import annotations

import numpy as np
import pytest

from app.figures import attention as F, style, tokenization as T
from app.figures.text import token_labels
from figure_helpers import spec, values
from model.inspect import inspect

TEXT = "the dogs near the cat run quickly."


@pytest.fixture(scope="module")
def bert(models):
    return inspect(models["bert-mlm"], "the dogs near the [MASK] run quickly.", top_k=5)


@pytest.fixture(scope="module")
def gpt2(models):
    return inspect(models["gpt2"], TEXT)


# Attention figures


@pytest.mark.parametrize("layer,head", [(0, 0), (1, 3)])
def test_heatmap_carries_exactly_the_selected_head(bert, layer, head):
    s = spec(F.attention_heatmap(bert, layer, head))
    assert len(s["data"]) == 1
    z = values(s["data"][0]["z"])
    np.testing.assert_allclose(z, bert.attention(layer, head), atol=1e-6)
    n = len(bert.tokens)
    assert z.shape == (n, n)
    assert s["data"][0]["x"] == s["data"][0]["y"] == token_labels(bert.tokens)
    assert len(set(s["data"][0]["x"])) == n  # "the" twice must stay two columns
    assert f"Layer {layer}, head {head}" in s["layout"]["title"]["text"]


@pytest.mark.parametrize("arch,text", [("bert-mlm", "the dogs near the [MASK] run quickly."), ("gpt2", TEXT)])
def test_heatmap_drawn_first_is_the_heatmap_drawn_from_the_inspection(models, arch, text):
    from model.progressive import inspect_layer

    full = inspect(models[arch], text, summaries=False, predictions=False)  # as the Attention page calls them
    for layer, head, selected in ((0, 0, None), (1, 2, 3)):
        first = inspect_layer(models[arch], text, layer)
        assert spec(F.attention_heatmap(first, layer, head, selected)) == spec(F.attention_heatmap(full, layer, head, selected))


def test_heatmap_outlines_selected_token_row_and_column(bert):
    s = spec(F.attention_heatmap(bert, 0, 1, selected=3))
    shapes = s["layout"]["shapes"]
    assert len(shapes) == 2
    assert {(sh["y0"], sh["y1"]) for sh in shapes} >= {(2.5, 3.5)} and {(sh["x0"], sh["x1"]) for sh in shapes} >= {(2.5, 3.5)}
    assert "shapes" not in spec(F.attention_heatmap(bert, 0, 1))["layout"]


def test_rollout_heatmap_matches_inspection(gpt2):
    z = values(spec(F.rollout_heatmap(gpt2))["data"][0]["z"])
    np.testing.assert_allclose(z, gpt2.rollout(), atol=1e-6)
    assert np.allclose(np.triu(z, 1), 0)  # causal: no flow from later tokens


def _pool_reference(m: np.ndarray, size: int) -> np.ndarray:
    n = m.shape[0]
    s = min(n, size)
    edges = np.linspace(0, n, s + 1).round().astype(int)
    out = np.zeros((s, s))
    for i in range(s):
        for j in range(s):
            out[i, j] = m[edges[i]:edges[i + 1], edges[j]:edges[j + 1]].mean()
    return out


@pytest.mark.parametrize("n,size", [(4, 2), (7, 3), (37, 16), (5, 16)])
def test_pool_map_equals_block_means(n, size):
    m = np.random.default_rng(n).random((n, n)).astype(np.float32)
    np.testing.assert_allclose(F.pool_map(m, size), _pool_reference(m, size), rtol=1e-5)


def test_thumbnails_and_grid(bert):
    thumbs = F.layer_thumbnails(bert, size=4)
    assert thumbs.shape == (bert.num_layers, bert.num_heads, 4, 4)
    np.testing.assert_allclose(thumbs.max(axis=(2, 3)), 1.0, rtol=1e-3)
    ref = _pool_reference(bert.attention_layer(1)[2].astype(np.float32), 4)
    np.testing.assert_allclose(thumbs[1, 2], ref / ref.max(), atol=2e-3)
    s = spec(F.layer_head_grid(thumbs, selected=(1, 2)))
    big = values(s["data"][0]["z"])
    assert big.shape == (bert.num_layers * 5 - 1, bert.num_heads * 5 - 1)
    np.testing.assert_allclose(big[5:9, 10:14], thumbs[1, 2])
    assert np.isnan(big[4]).all() and np.isnan(big[:, 4]).all()  # gaps between tiles
    assert s["layout"]["xaxis"]["ticktext"] == [f"h{h}" for h in range(bert.num_heads)]
    assert len(s["layout"]["shapes"]) == 1


def _shown(fig, lecture: bool):
    """What app.common.show does to a figure before drawing it (lecture mode: 18 px type, 24 px titles,
    1.4x height; always: axes push the margins for their labels)."""
    if lecture:
        fig.update_layout(font=dict(size=18), title_font=dict(size=24))
        fig.update_layout(height=int(fig.layout.height * 1.4))
    fig.update_xaxes(automargin=True)
    fig.update_yaxes(automargin=True)
    return fig


@pytest.mark.parametrize("lecture", [False, True])
def test_grid_title_stays_above_the_column_labels(lecture):
    """The overview's title sits, in paper coordinates, above the top of the y domain plus the room the column
    labels need (in lecture mode with its explanation on a line of its own between them), and inside the
    figure, for 1..24 layers x 1..16 heads, in normal and in lecture mode (as common.show draws it).
    Independent bounds: a label line takes at most 1.4 em + 4 px above the axis, a text line 1.25 em; each
    text is one line (plotly anchors a multi-line title by its first line only)."""
    font = style.LECTURE_FONT if lecture else style.BASE_FONT
    sizes = [(L, H) for L in (1, 2, 3, 4, 6, 8, 12, 16, 23, 24) for H in (1, 2, 3, 4, 6, 8, 12, 16)]  # figures: ~0.1 s each
    for n_layers, n_heads in sizes:
        fig = _shown(F.layer_head_grid(np.ones((n_layers, n_heads, 2, 2), np.float32), (0, 0), font_size=font),
                     lecture)
        lay, where = fig.layout, f"{n_layers} layers x {n_heads} heads, lecture={lecture}"
        title = lay.title
        assert (title.yref, title.y, title.yanchor) == ("paper", 1, "bottom") and "<br>" not in title.text
        assert lay.yaxis.constraintoward == "top" and lay.yaxis.domain in (None, (0, 1))  # domain top = paper 1
        assert lay.xaxis.side == "top" and lay.xaxis.tickangle == 0  # labels never rotate into a taller band
        plot_h = lay.height - lay.margin.t - lay.margin.b
        fs = lay.font.size
        above_labels = 1 + (1.4 * fs + 4) / plot_h  # paper y of the column labels' top edge
        title_bottom = 1 + title.pad.b / plot_h
        notes = [a for a in lay.annotations if a.name == "title note"]
        if lecture:  # "All heads", and under it its explanation
            (note,) = notes
            assert (note.yref, note.y, note.yanchor) == ("paper", 1, "bottom") and "<br>" not in note.text
            note_bottom = 1 + note.yshift / plot_h
            assert note_bottom >= above_labels, where
            assert title_bottom >= note_bottom + 1.25 * (note.font.size or fs) / plot_h, where
            assert title.text + " " + note.text == "All heads (tiles scaled to their own max)"
        else:
            assert not notes and title.text == "All heads (tiles scaled to their own max)"
            assert title_bottom >= above_labels, where
        title_top = title_bottom + 1.25 * title.font.size / plot_h
        assert title_top <= 1 + lay.margin.t / plot_h, where  # inside the figure's top edge
        assert title.font.size == (24 if lecture else 16) and fs == font
        # written labels (every `step`-th) fit side by side in a GRID_WIDTH_PX-wide plot: 0.62 em a character
        g = F.grid_geometry(n_layers, n_heads, font)
        pitch = min(F.GRID_WIDTH_PX / n_heads, g.plot / n_layers)  # px per tile (tiles stay square)
        xs, ys = lay.xaxis.ticktext, lay.yaxis.ticktext
        assert xs[0] == "h0" and len(xs) == len(range(0, n_heads, g.head_step)), where
        assert g.head_step * pitch >= 0.62 * fs * len(f"h{n_heads - 1}"), where
        assert ys[0] == "L0" and g.layer_step * pitch >= 1.2 * fs, where
    for n_layers in range(1, 25):  # every size, as geometry
        for n_heads in range(1, 17):
            g = F.grid_geometry(n_layers, n_heads, font)
            assert g.labels >= 1.4 * g.font_size + 4 and g.title >= 1.25 * g.title_size
            assert g.note >= (1.25 * g.font_size if lecture else 0)
            assert g.top >= g.pad + g.title + g.note + g.labels and g.plot > 0
    # lecture mode's larger type gets a taller band: the explanation on its own line, more room for the labels
    normal, big = F.grid_geometry(12, 12), F.grid_geometry(12, 12, style.LECTURE_FONT)
    assert big.top > normal.top and normal.note == 0 < big.note


def _segments(s) -> list[tuple[int, int, str]]:
    out = []
    for tr in s["data"]:
        if tr.get("mode") != "lines":
            continue
        xs, ys = tr["x"], tr["y"]
        kind = "out" if tr["line"]["color"].startswith("rgba(33,113,181") else "in"
        out += [(ys[i], ys[i + 1], kind) for i in range(0, len(xs), 3)]
    return out


@pytest.mark.parametrize("k", [1, 3])
def test_head_lines_draw_each_tokens_top_k(bert, k):
    segs = _segments(spec(F.head_lines(bert, 1, 1, top_k=k)))
    z = bert.attention(1, 1)
    n = len(bert.tokens)
    assert len(segs) == n * k
    expected = {(q, int(key)) for q in range(n) for key in np.argsort(-z[q])[:k]}
    assert {(q, key) for q, key, _ in segs} == expected


def test_head_lines_for_a_selected_token(bert):
    segs = _segments(spec(F.head_lines(bert, 0, 2, top_k=2, selected=4)))
    z = bert.attention(0, 2)
    assert {(q, key) for q, key, kind in segs if kind == "out"} == {(4, int(k)) for k in np.argsort(-z[4])[:2]}
    assert {(q, key) for q, key, kind in segs if kind == "in"} == {(int(q), 4) for q in np.argsort(-z[:, 4])[:2]}


def test_attends_is_row_and_column(bert):
    row, col = F.attends(bert, 1, 0, 2)
    z = bert.attention(1, 0)
    np.testing.assert_array_equal(row, z[2])
    np.testing.assert_array_equal(col, z[:, 2])
    with pytest.raises(ValueError, match="out of range"):
        F.attends(bert, 1, 0, len(bert.tokens))


def test_head_summary_table_and_heatmaps(bert):
    table = F.head_summary_table(bert)
    s = bert.head_summary
    assert len(table) == bert.num_layers * bert.num_heads
    row = table[(table["layer"] == 1) & (table["head"] == 3)].iloc[0]
    assert row["entropy"] == pytest.approx(s.entropy[1, 3], abs=1e-3)
    assert row["distance"] == pytest.approx(s.distance[1, 3], abs=1e-2)
    assert row["special share"] == pytest.approx(s.special_share[1, 3], abs=1e-3)
    assert 0 < row["entropy / max"] <= 1.001
    heat = spec(F.head_summary_heatmaps(bert))
    assert len(heat["data"]) == 3
    np.testing.assert_allclose(values(heat["data"][1]["z"]), s.distance, rtol=1e-6)


def test_user_text_is_escaped_everywhere(models):
    insp = inspect(models["gpt2"], "<script>alert(1)</script> <b>x</b>")
    html = F.weighted_tokens_html(insp.tokens, np.ones(len(insp.tokens)))
    assert "<script" not in html and "&lt;" in html
    assert "<script" not in T.tokens_html(insp.tokens)
    for fig in (F.attention_heatmap(insp, 0, 0), F.head_lines(insp, 0, 0),
                T.tokenization_figure([("m<i>", insp.text, insp.tokens)])):
        assert "<script" not in fig.to_json() and "<b>" not in fig.to_json()
