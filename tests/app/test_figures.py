"""app/figures.py, app/widgets/bertviz_view.py and model/corruption.py on real Inspections of tiny
random models: shapes, labels, escaping, and agreement with reference computations (numpy loops,
kernels.masking, bertviz's own Python)."""
from __future__ import annotations

import base64
import json
import re

import numpy as np
import pytest
import torch

from app import figures
from app.widgets import bertviz_view
from model.inspect import InputError, encode, inspect
from model.load import load_model
from model.corruption import corrupt, mask_positions
from model.results import Token

TEXT = "the dogs near the cat run quickly."


def values(obj) -> np.ndarray:
    """A plotly array as numpy: plotly 6+ ships numpy arrays as base64 typed arrays ({dtype, bdata, shape})."""
    if isinstance(obj, dict) and "bdata" in obj:
        arr = np.frombuffer(base64.b64decode(obj["bdata"]), dtype=np.dtype(obj["dtype"]))
        shape = obj.get("shape")
        return arr.reshape([int(s) for s in str(shape).split(",")]) if shape else arr
    return np.asarray(obj, dtype=float)


def spec(fig) -> dict:
    return json.loads(fig.to_json())


@pytest.fixture(scope="module")
def models(tiny_models):
    return {arch: load_model(path) for arch, path in tiny_models.items()}


@pytest.fixture(scope="module")
def bert(models):
    return inspect(models["bert-mlm"], "the dogs near the [MASK] run quickly.", top_k=5)


@pytest.fixture(scope="module")
def gpt2(models):
    return inspect(models["gpt2"], TEXT)


# ---------------------------------------------------------------------------------------------------
# Attention figures


@pytest.mark.parametrize("layer,head", [(0, 0), (1, 3)])
def test_heatmap_carries_exactly_the_selected_head(bert, layer, head):
    s = spec(figures.attention_heatmap(bert, layer, head))
    assert len(s["data"]) == 1
    z = values(s["data"][0]["z"])
    np.testing.assert_allclose(z, bert.attention(layer, head), atol=1e-6)
    n = len(bert.tokens)
    assert z.shape == (n, n)
    assert s["data"][0]["x"] == s["data"][0]["y"] == figures.token_labels(bert.tokens)
    assert len(set(s["data"][0]["x"])) == n  # "the" twice must stay two columns
    assert f"Layer {layer}, head {head}" in s["layout"]["title"]["text"]


def test_heatmap_outlines_selected_token_row_and_column(bert):
    s = spec(figures.attention_heatmap(bert, 0, 1, selected=3))
    shapes = s["layout"]["shapes"]
    assert len(shapes) == 2
    assert {(sh["y0"], sh["y1"]) for sh in shapes} >= {(2.5, 3.5)} and {(sh["x0"], sh["x1"]) for sh in shapes} >= {(2.5, 3.5)}
    assert "shapes" not in spec(figures.attention_heatmap(bert, 0, 1))["layout"]


def test_rollout_heatmap_matches_inspection(gpt2):
    z = values(spec(figures.rollout_heatmap(gpt2))["data"][0]["z"])
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
    np.testing.assert_allclose(figures.pool_map(m, size), _pool_reference(m, size), rtol=1e-5)


def test_thumbnails_and_grid(bert):
    thumbs = figures.layer_thumbnails(bert, size=4)
    assert thumbs.shape == (bert.num_layers, bert.num_heads, 4, 4)
    np.testing.assert_allclose(thumbs.max(axis=(2, 3)), 1.0, rtol=1e-3)
    ref = _pool_reference(bert.attention_layer(1)[2].astype(np.float32), 4)
    np.testing.assert_allclose(thumbs[1, 2], ref / ref.max(), atol=2e-3)
    s = spec(figures.layer_head_grid(thumbs, selected=(1, 2)))
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
    font = figures.LECTURE_FONT if lecture else figures.BASE_FONT
    sizes = [(L, H) for L in (1, 2, 3, 4, 6, 8, 12, 16, 23, 24) for H in (1, 2, 3, 4, 6, 8, 12, 16)]  # figures: ~0.1 s each
    for n_layers, n_heads in sizes:
        fig = _shown(figures.layer_head_grid(np.ones((n_layers, n_heads, 2, 2), np.float32), (0, 0), font_size=font),
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
        g = figures.grid_geometry(n_layers, n_heads, font)
        pitch = min(figures.GRID_WIDTH_PX / n_heads, g.plot / n_layers)  # px per tile (tiles stay square)
        xs, ys = lay.xaxis.ticktext, lay.yaxis.ticktext
        assert xs[0] == "h0" and len(xs) == len(range(0, n_heads, g.head_step)), where
        assert g.head_step * pitch >= 0.62 * fs * len(f"h{n_heads - 1}"), where
        assert ys[0] == "L0" and g.layer_step * pitch >= 1.2 * fs, where
    for n_layers in range(1, 25):  # every size, as geometry
        for n_heads in range(1, 17):
            g = figures.grid_geometry(n_layers, n_heads, font)
            assert g.labels >= 1.4 * g.font_size + 4 and g.title >= 1.25 * g.title_size
            assert g.note >= (1.25 * g.font_size if lecture else 0)
            assert g.top >= g.pad + g.title + g.note + g.labels and g.plot > 0
    # lecture mode's larger type gets a taller band: the explanation on its own line, more room for the labels
    normal, big = figures.grid_geometry(12, 12), figures.grid_geometry(12, 12, figures.LECTURE_FONT)
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
    segs = _segments(spec(figures.head_lines(bert, 1, 1, top_k=k)))
    z = bert.attention(1, 1)
    n = len(bert.tokens)
    assert len(segs) == n * k
    expected = {(q, int(key)) for q in range(n) for key in np.argsort(-z[q])[:k]}
    assert {(q, key) for q, key, _ in segs} == expected


def test_head_lines_for_a_selected_token(bert):
    segs = _segments(spec(figures.head_lines(bert, 0, 2, top_k=2, selected=4)))
    z = bert.attention(0, 2)
    assert {(q, key) for q, key, kind in segs if kind == "out"} == {(4, int(k)) for k in np.argsort(-z[4])[:2]}
    assert {(q, key) for q, key, kind in segs if kind == "in"} == {(int(q), 4) for q in np.argsort(-z[:, 4])[:2]}


def test_attends_is_row_and_column(bert):
    row, col = figures.attends(bert, 1, 0, 2)
    z = bert.attention(1, 0)
    np.testing.assert_array_equal(row, z[2])
    np.testing.assert_array_equal(col, z[:, 2])
    with pytest.raises(ValueError, match="out of range"):
        figures.attends(bert, 1, 0, len(bert.tokens))


def test_head_summary_table_and_heatmaps(bert):
    table = figures.head_summary_table(bert)
    s = bert.head_summary
    assert len(table) == bert.num_layers * bert.num_heads
    row = table[(table["layer"] == 1) & (table["head"] == 3)].iloc[0]
    assert row["entropy"] == pytest.approx(s.entropy[1, 3], abs=1e-3)
    assert row["distance"] == pytest.approx(s.distance[1, 3], abs=1e-2)
    assert row["special share"] == pytest.approx(s.special_share[1, 3], abs=1e-3)
    assert 0 < row["entropy / max"] <= 1.001
    heat = spec(figures.head_summary_heatmaps(bert))
    assert len(heat["data"]) == 3
    np.testing.assert_allclose(values(heat["data"][1]["z"]), s.distance, rtol=1e-6)


def test_user_text_is_escaped_everywhere(models):
    insp = inspect(models["gpt2"], "<script>alert(1)</script> <b>x</b>")
    html = figures.weighted_tokens_html(insp.tokens, np.ones(len(insp.tokens)))
    assert "<script" not in html and "&lt;" in html
    assert "<script" not in figures.tokens_html(insp.tokens)
    for fig in (figures.attention_heatmap(insp, 0, 0), figures.head_lines(insp, 0, 0),
                figures.tokenization_figure([("m<i>", insp.text, insp.tokens)])):
        assert "<script" not in fig.to_json() and "<b>" not in fig.to_json()


# ---------------------------------------------------------------------------------------------------
# Tokenization figures


def test_tokenization_figure_aligns_pieces_on_characters(models):
    text = "unbelievable tokenization, été 😀"
    rows = [(name, text, encode(models[name], text).tokens) for name in ("bert-mlm", "gpt2", "albert-pretraining")]
    s = spec(figures.tokenization_figure(rows))
    bars = [tr for tr in s["data"] if tr["type"] == "bar"]
    for name, _, tokens in rows:
        mine = [tr for tr in bars if tr["name"].startswith(name + " ")]
        got = sorted((float(b), float(w), t) for tr in mine for b, w, t in zip(values(tr["base"]), values(tr["x"]), tr["text"])
                     if not tr["name"].endswith("special"))
        want = sorted((float(t.start), float(max(t.end - t.start, 0.3)), figures.esc(t.text)) for t in tokens if not t.special)
        assert got == want
        for tr in mine:
            if tr["name"].endswith("special"):
                bases = values(tr["base"])
                assert ((bases + values(tr["x"]) <= 0) | (bases >= len(text))).all()  # outside the text
    unknown = [tr for tr in bars if tr["name"].endswith("unknown")]
    assert unknown and all(tr["marker"]["color"] == figures.UNK_COLOR for tr in unknown)
    assert s["layout"]["yaxis"]["categoryarray"][-1] == "input"


def test_tokenization_stats_and_pieces(models):
    text = "hello world, unbelievable tokenization été"
    rows = [(name, text, encode(models[name], text).tokens) for name in ("bert-mlm", "gpt2")]
    stats = figures.tokenization_stats(rows).set_index("model")
    for name, _, tokens in rows:
        pieces = [t for t in tokens if not t.special]
        assert stats.loc[name, "tokens"] == len(pieces)
        assert stats.loc[name, "chars / token"] == round(len(text) / len(pieces), 2)
    assert stats.loc["gpt2", "special"] == 0 and stats.loc["bert-mlm", "special"] == 2
    bert_html, gpt_html = figures.tokens_html(rows[0][2]), figures.tokens_html(rows[1][2])
    assert "##" in bert_html and "Ġ" in gpt_html  # markers stay visible
    assert all(f"<small>{t.id}</small>" in gpt_html for t in rows[1][2])


# ---------------------------------------------------------------------------------------------------
# Masked LM figures and the pretraining demo


def test_mask_bars(bert):
    (m,) = bert.masks
    truth = m.predictions[2].token
    s = spec(figures.mask_bars(m, bert.tokens, truth=truth))
    bar = s["data"][0]
    np.testing.assert_allclose(values(bar["x"]), [p.prob for p in m.predictions])
    assert bar["y"][0].startswith("1. ") and len(bar["y"]) == 5
    assert bar["marker"]["color"][2] == figures.TRUTH_COLOR and bar["marker"]["color"][0] == figures.TOP_COLOR
    assert "[MASK]" in s["layout"]["title"]["text"]


def test_the_hidden_token_gets_its_rank_and_probability_even_outside_the_top_k(models):
    """inspect(mask_targets=...) gives each mask the hidden token's probability and rank over the whole
    vocabulary (checked against a full-vocabulary run); mask_bars adds it under the top k when it is not
    among them."""
    m = models["bert-mlm"]
    text = "the dogs near the [MASK] run quickly."
    at = text.index("[MASK]")
    full = inspect(m, text, top_k=1000)  # every token of the tiny vocabulary, best first
    ranked = full.masks[0].predictions
    for rank in (1, 4, 40):  # inside the top 5 and far outside it
        hidden = ranked[rank - 1]
        insp = inspect(m, text, top_k=5, mask_targets={at: hidden.id})
        (mask,) = insp.masks
        assert mask.target.id == hidden.id and mask.target.token == hidden.token
        assert mask.target_rank == rank and mask.target.prob == pytest.approx(hidden.prob, rel=1e-5)
        assert mask.to_json()["target"]["rank"] == rank
        bar = spec(figures.mask_bars(mask, insp.tokens))["data"][0]
        if rank <= 5:  # already a bar: drawn in the truth colour, nothing added
            assert len(bar["y"]) == 5 and bar["marker"]["color"][rank - 1] == figures.TRUTH_COLOR
        else:  # a gap, then the hidden token at its rank
            assert len(bar["y"]) == 7 and bar["y"][-1] == f"{rank}. {hidden.token}"
            assert bar["marker"]["color"][-1] == figures.TRUTH_COLOR
            assert values(bar["x"])[-1] == pytest.approx(hidden.prob, rel=1e-5)
    assert inspect(m, text, top_k=5).masks[0].target is None  # no target asked for: none given


@pytest.mark.parametrize("seed", [0, 1, 7])
@pytest.mark.parametrize("whole_word", [False, True])
def test_corrupt_matches_the_masking_kernel(models, seed, whole_word):
    from kernels.masking import ACTION_NAMES, mlm_mask

    m = models["bert-mlm"]
    text = "unbelievable tokenization happens here and there again and again."
    demo = corrupt(m, text, seed, whole_word=whole_word, mlm_probability=0.5)
    enc = encode(m, text)
    special = torch.tensor([[t.special for t in enc.tokens]])
    wid = None
    if whole_word:
        wid = torch.tensor([[-1 if t.special else t.word for t in enc.tokens]])
    ref = mlm_mask(torch.from_numpy(enc.input_ids)[None], special, vocab_size=m.info.vocab_size,
                   mask_token_id=m.tokenizer.mask_token_id, mlm_probability=0.5, word_ids=wid,
                   generator=torch.Generator().manual_seed(seed))
    for r, a, shown, tok in zip(demo.rows, ref.action[0].tolist(), ref.input_ids[0].tolist(), enc.tokens):
        assert r.action == ("special" if tok.special else ACTION_NAMES[a])
        assert r.shown == (tok.text if tok.special else m.tokenizer.convert_ids_to_tokens(shown))
    if whole_word:  # pieces of one word are chosen together
        chosen = {}
        for r, tok in zip(demo.rows, enc.tokens):
            if not tok.special:
                chosen.setdefault(tok.word, set()).add(r.predicted)
        assert all(len(v) == 1 for v in chosen.values())
    counts = demo.counts()
    assert sum(counts.values()) == len(enc.tokens) and counts["special"] == 2
    html, table = figures.corruption_html(demo.rows), figures.corruption_table(demo.rows)
    assert len(table) == len(demo.rows) and html.count("<span") == len(demo.rows)


def test_corrupt_reseeding_and_refusals(models):
    m = models["bert-mlm"]
    text = "the quick brown fox jumps over the lazy dog and the cat sleeps near the dogs."
    draws = {tuple(r.action for r in corrupt(m, text, s).rows) for s in range(6)}
    assert len(draws) > 1  # new seeds give new draws
    assert corrupt(m, text, 3).rows == corrupt(m, text, 3).rows
    with pytest.raises(InputError, match="no mask token"):
        corrupt(models["gpt2"], text)
    with pytest.raises(InputError, match="empty"):
        corrupt(m, "   ")


@pytest.mark.parametrize("arch", ["bert-mlm", "roberta-mlm", "albert-pretraining"])
@pytest.mark.parametrize("whole_word", [False, True])
def test_mask_positions_masks_exactly_the_picked_pieces(models, arch, whole_word):
    m = models[arch]
    text = "hello world, the unbelievable cat sleeps"
    tokens = encode(m, text).tokens
    picks = [i for i, t in enumerate(tokens) if not t.special][1:4:2]
    masked, truths = mask_positions(text, tokens, picks, m.info.mask_token, whole_word)
    expect = set(picks)
    if whole_word:
        words = {tokens[p].word for p in picks}
        expect = {i for i, t in enumerate(tokens) if not t.special and t.word in words}
    expect = {i for i in expect if tokens[i].end > tokens[i].start}
    assert masked.count(m.info.mask_token) == len(expect) == len(truths)
    assert sorted(truths.values()) == sorted(tokens[i].text for i in expect)
    for start in truths:
        assert masked[start:start + len(m.info.mask_token)] == m.info.mask_token
    insp = inspect(m, masked, top_k=3)
    assert len(insp.masks) == len(expect)
    assert {insp.tokens[mp.position].start for mp in insp.masks} <= set(truths) | {s - 1 for s in truths}


def test_mask_positions_ignores_specials_and_out_of_range():
    toks = [Token("[CLS]", 1, 0, 0, True), Token("cat", 7, 0, 3, False, 0), Token("[SEP]", 2, 0, 0, True)]
    assert mask_positions("cat", toks, [0, 2, 9], "[MASK]") == ("cat", {})


# ---------------------------------------------------------------------------------------------------
# bertviz, offline


def _bertviz_reference(insp, view: str) -> dict:
    """bertviz's own params for the same maps (its Python needs torch tensors (1, H, N, N) per layer)."""
    from bertviz import head_view, model_view

    attn = [torch.from_numpy(insp.attention_layer(l).astype(np.float32))[None] for l in range(insp.num_layers)]
    tokens = [t.text for t in insp.tokens]
    b_start = next((i for i, t in enumerate(insp.tokens) if t.segment == 1), None)
    fn = head_view if view == "head" else model_view
    kw = {"display_mode": "light"} if view == "model" else {}  # ours is light (lecture mode, printing)
    html = fn(attn, tokens, sentence_b_start=b_start, html_action="return", **kw).data
    js = re.search(r"const params = (.*?); // HACK", html, re.S).group(1)
    return json.loads(js)


@pytest.mark.parametrize("view", ["head", "model"])
@pytest.mark.parametrize("arch,pair", [("gpt2", None), ("albert-pretraining", None), ("bert-pretraining", "the cat sleeps.")])
def test_bertviz_params_equal_bertviz_own(models, view, arch, pair):
    insp = inspect(models[arch], "the dogs run near the cat", pair)  # GPT-2's Ġ / ALBERT's ▁ get prettified
    mine = bertviz_view.attention_params(insp, view)
    ref = _bertviz_reference(insp, view)
    assert set(mine) == set(ref)
    assert len(mine["attention"]) == len(ref["attention"]) == (5 if pair else 1)
    for a, b in zip(mine["attention"], ref["attention"]):
        assert (a["name"], a["left_text"], a["right_text"]) == (b["name"], b["left_text"], b["right_text"])
        np.testing.assert_allclose(np.array(a["attn"]), np.array(b["attn"]), atol=1e-4)
    for key in set(mine) - {"attention", "root_div_id"}:
        assert mine[key] == ref[key], key


def test_bertviz_html_is_offline_and_escaped(models):
    insp = inspect(models["gpt2"], "</script><script>alert(1)</script>")
    for view in ("head", "model"):
        page = bertviz_view.bertviz_html(insp, view, layer=1 if view == "head" else None)
        assert "cdnjs" not in page and "<script src" not in page
        assert page.count("</script>") == 4  # jQuery, d3, the shim, bertviz: user text closes nothing
        assert "\\u003c" in page  # the tokens' "<" are there, as JSON escapes
        assert "jQuery" in page and "d3" in page


def test_bertviz_refuses_long_inputs(models, monkeypatch):
    insp = inspect(models["bert-mlm"], TEXT)
    monkeypatch.setattr(bertviz_view, "MAX_TOKENS", 4)
    with pytest.raises(bertviz_view.BertvizUnavailable, match="up to 4 tokens"):
        bertviz_view.bertviz_html(insp)


def test_script_json_escapes_closing_tags():
    s = bertviz_view.script_json({"t": "</script>&\u2028"})
    assert "<" not in s and ">" not in s and "&" not in s
    assert json.loads(s) == {"t": "</script>&\u2028"}
