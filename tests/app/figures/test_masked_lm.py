"""app/figures/masked_lm.py on real Inspections of tiny random models: the top-k bars, the hidden token's
rank, and the corruption demo's sentence and table."""
from __future__ import annotations

import numpy as np
import pytest

from app.figures import masked_lm as F, style
from figure_helpers import spec, values
from model.corruption import corrupt
from model.inspect import inspect


@pytest.fixture(scope="module")
def bert(models):
    return inspect(models["bert-mlm"], "the dogs near the [MASK] run quickly.", top_k=5)


# Masked LM figures and the pretraining demo


def test_mask_bars(bert):
    (m,) = bert.masks
    truth = m.predictions[2].token
    s = spec(F.mask_bars(m, bert.tokens, truth=truth))
    bar = s["data"][0]
    np.testing.assert_allclose(values(bar["x"]), [p.prob for p in m.predictions])
    assert bar["y"][0].startswith("1. ") and len(bar["y"]) == 5
    assert bar["marker"]["color"][2] == style.TRUTH_COLOR and bar["marker"]["color"][0] == F.TOP_COLOR
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
        bar = spec(F.mask_bars(mask, insp.tokens))["data"][0]
        if rank <= 5:  # already a bar: drawn in the truth colour, nothing added
            assert len(bar["y"]) == 5 and bar["marker"]["color"][rank - 1] == style.TRUTH_COLOR
        else:  # a gap, then the hidden token at its rank
            assert len(bar["y"]) == 7 and bar["y"][-1] == f"{rank}. {hidden.token}"
            assert bar["marker"]["color"][-1] == style.TRUTH_COLOR
            assert values(bar["x"])[-1] == pytest.approx(hidden.prob, rel=1e-5)
    assert inspect(m, text, top_k=5).masks[0].target is None  # no target asked for: none given


def test_corruption_html_and_table_show_every_token(models):
    demo = corrupt(models["bert-mlm"], "unbelievable tokenization happens here and there again.", 1)
    html, table = F.corruption_html(demo.rows), F.corruption_table(demo.rows)
    assert len(table) == len(demo.rows) and html.count("<span") == len(demo.rows)
