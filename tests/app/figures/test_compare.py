"""app/figures/compare.py from real pseudo-log-likelihoods, surprisals and logit lenses of tiny models."""
from __future__ import annotations

import html
import math
import re

import numpy as np
import pytest

from app.figures import compare as F
from app.figures.text import token_label
from model.inspect import inspect
from model.load import load_model


@pytest.fixture(scope="module")
def gpt2(models):
    return models["gpt2"]


@pytest.fixture(scope="module")
def bert(models):
    return models["bert-mlm"]


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
    assert hm.text[2][1] == token_label(lens.tokens[2][1][0])
    if causal:
        assert np.isnan(z[:, -1]).all()  # the last token has no next token to score
        assert hm.customdata[0][0][0] == token_label(ins.tokens[1].text)


def test_bits_to_prob_keeps_nan():
    np.testing.assert_allclose(F.bits_to_prob(np.array([1.0, np.nan])), [0.5, np.nan])
