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
        order = np.argsort(-prev, kind="stable")[:12]
        kept_bar = by_row[row][0]
        assert [int(i) for i in kept_bar.customdata[:, 0]] == order.tolist()
        assert kept_bar.x[0].replace("\u200b", "") == F.label(gpt2.tokenizer.convert_ids_to_tokens(int(order[0])))
        np.testing.assert_allclose(kept_bar.y, np.where(s.probs[order] > 0, s.probs[order], 0), rtol=1e-6)
        removed = s.probs[order] == 0
        if removed.any():  # ghosts stand at the probability the token had before this stage
            np.testing.assert_allclose(by_row[row][1].y, np.where(removed, prev[order], 0), rtol=1e-6)
        prev = s.probs
    if "top_k" in cfg:  # top-k keeps a prefix of the ranking: the cut sits after bar k
        assert any(sh.x0 == cfg["top_k"] - 0.5 for sh in fig.layout.shapes)


def test_stage_figure_follows_temperature(gpt2):
    a = F.stage_figure(next_token_distribution(gpt2, "the cat", SamplingConfig(temperature=0.5))[0], names_of(gpt2))
    b = F.stage_figure(next_token_distribution(gpt2, "the cat", SamplingConfig(temperature=2.0))[0], names_of(gpt2))
    ya, yb = a.data[-1].y, b.data[-1].y  # the temperature row
    assert ya[0] > yb[0]  # a colder distribution puts more mass on its best token
    with pytest.raises(ValueError):
        F.stage_figure([], names_of(gpt2))


def test_candidates_figure_marks_the_pick(gpt2):
    r = generate(gpt2, "the quick", strategy="sample", max_new_tokens=3, seed=1, top_k=8)
    for step in r.steps:
        fig = F.candidates_figure(step.candidates, step.pick)
        colors = list(fig.data[0].marker.color)
        assert [c.prob for c in step.candidates] == list(fig.data[0].y)
        picked = [i for i, c in enumerate(step.candidates) if c.id == step.pick.id]
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
    from model.jobs import checkpoints, read_events

    return read_events(out), checkpoints(out)


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
