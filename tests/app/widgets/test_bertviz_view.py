"""app/widgets/bertviz_view.py on Inspections of tiny random models: the params equal bertviz's own Python's,
the page is offline and escaped, long inputs are refused."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from app.widgets import bertviz_view
from model.inspect import inspect

TEXT = "the dogs near the cat run quickly."


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
