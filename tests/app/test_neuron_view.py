"""bertviz's neuron view from our engine: `model.inspect.neuron_data` (queries, keys, attention) and
`app.widgets.neuron_view` (the params bertviz's neuron_view.js reads, one offline HTML page), checked against
the attention maps the heatmap shows and against bertviz's own Python (its patched BERT / GPT-2 classes
that return queries and keys), plus the Attention page in AppTest on the shipped demo BERT."""
from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from app.widgets import bertviz_view, neuron_view
from model.inspect import Unavailable, inspect, neuron_data, neuron_unavailable
from model.load import load_model
from model.registry import ASSETS_MODELS
from tiny_models import ARCHS

TEXT = "the dogs near the cat run quickly."
MAIN = str(Path(__file__).resolve().parents[2] / "app" / "main.py")


@pytest.fixture(scope="module")
def models(tiny_models):
    return {arch: load_model(tiny_models[arch]) for arch in ("bert-mlm", "bert-pretraining", "gpt2", "albert-pretraining")}


def _softmax_scores(q: np.ndarray, k: np.ndarray, scale: float, causal: bool) -> np.ndarray:
    """softmax(q k^T * scale) with an optional causal mask, in float64: (N, d), (N, d) -> (N, N)."""
    s = q.astype(np.float64) @ k.astype(np.float64).T * scale
    if causal:
        s = np.where(np.tril(np.ones_like(s, dtype=bool)), s, -np.inf)
    e = np.exp(s - s.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


# ---------------------------------------------------------------------------------------------------
# the data builder


@pytest.mark.parametrize("arch", ARCHS)
def test_neuron_data_shapes_and_equality_with_the_attention_maps(tiny_models, arch):
    m = load_model(tiny_models[arch])
    insp = inspect(m, TEXT, summaries=False)
    v = neuron_data(m, TEXT)
    n, L, H = len(insp.tokens), insp.num_layers, insp.num_heads
    d = v.head_dim
    assert [t.text for t in v.tokens] == [t.text for t in insp.tokens]
    assert v.layers == tuple(range(L))
    assert v.queries.shape == v.keys.shape == (L, H, n, d) and v.queries.dtype == np.float32
    assert v.attention.shape == (L, H, n, n) and v.scale.shape == (L,)
    assert v.causal == (arch == "gpt2")
    for layer in range(L):
        for head in range(H):
            q, k, p = v.head(layer, head)
            assert q.shape == k.shape == (n, d) and p.shape == (n, n)
            assert np.allclose(p, insp.attention_layer(layer)[head], atol=1e-3)  # the fp16 maps sent to the heatmap
            assert np.allclose(p, insp.attention(layer, head), atol=1e-6)  # the exact fp32 map
            # and the queries / keys are the ones those maps come from
            assert np.allclose(_softmax_scores(q, k, float(v.scale[layer]), v.causal), p, atol=1e-5)
    if arch == "gpt2":
        assert np.all(np.triu(v.attention, 1) == 0)  # causal: nothing above the diagonal


def test_neuron_data_selected_layers_and_bad_layers(models):
    v = neuron_data(models["bert-mlm"], TEXT, layers=[1])
    assert v.layers == (1,) and v.queries.shape[0] == 1
    full = neuron_data(models["bert-mlm"], TEXT)
    assert np.array_equal(v.head(1, 2)[0], full.head(1, 2)[0])
    with pytest.raises(ValueError, match="not held here"):
        v.head(0, 0)
    with pytest.raises(ValueError, match="out of range"):
        neuron_data(models["bert-mlm"], TEXT, layers=[7])


def test_neuron_data_explains_models_without_queries_and_keys(tiny_models, tmp_path):
    # a copy under another path: load_model shares one object per path, and this test changes it
    m = load_model(shutil.copytree(tiny_models["bert-mlm"], tmp_path / "bert"))
    assert neuron_unavailable(m) is None
    m.backend.record_attention = False  # what load_model does for models outside AttentionInterface
    m.backend.model.set_attn_implementation("eager")
    reason = neuron_unavailable(m)
    assert reason and "probabilities only" in reason and "AttentionInterface" in reason
    with pytest.raises(Unavailable, match="probabilities only"):
        neuron_data(m, TEXT)
    assert inspect(m, TEXT, summaries=False).has_attention  # the heatmap still works on that path


def test_neuron_data_refuses_a_model_without_attention():
    if not (ASSETS_MODELS / "elmo" / "config.json").is_file():
        pytest.skip("needs the demo ELMo in assets/models (make demo-models)")
    m = load_model(str(ASSETS_MODELS / "elmo"))
    reason = neuron_unavailable(m)
    assert reason and "attention" in reason
    with pytest.raises(Unavailable):
        neuron_data(m, TEXT)


# ---------------------------------------------------------------------------------------------------
# bertviz's params and the page


def _bertviz_reference(loaded, model_type: str, text: str) -> dict:
    """bertviz's own neuron-view data: its patched BERT / GPT-2 class (which returns queries and keys) with
    our model's weights, through `bertviz.neuron_view.get_attention`."""
    from bertviz import neuron_view as bv
    from bertviz.transformers_neuron_view import modeling_bert, modeling_gpt2

    cfg = loaded.backend.model.config
    if model_type == "bert":
        c = modeling_bert.BertConfig(cfg.vocab_size, hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_hidden_layers,
                                     num_attention_heads=cfg.num_attention_heads, intermediate_size=cfg.intermediate_size,
                                     max_position_embeddings=cfg.max_position_embeddings,
                                     type_vocab_size=cfg.type_vocab_size, layer_norm_eps=cfg.layer_norm_eps)
        ref = modeling_bert.BertModel
    else:
        c = modeling_gpt2.GPT2Config(cfg.vocab_size, n_positions=cfg.n_positions, n_ctx=cfg.n_positions, n_embd=cfg.n_embd,
                                     n_layer=cfg.n_layer, n_head=cfg.n_head, layer_norm_epsilon=cfg.layer_norm_epsilon)
        ref = modeling_gpt2.GPT2Model
    c.output_attentions = True
    model = ref(c).eval()
    missing, unexpected = model.load_state_dict(loaded.backend.model.base_model.state_dict(), strict=False)
    # only the pooler (unused here) and GPT-2's causal-mask buffers are bertviz's own
    assert not unexpected and all(k.startswith("pooler.") or k.endswith("attn.bias") for k in missing), missing
    with torch.no_grad():
        return bv.get_attention(model, model_type, loaded.tokenizer, text, include_queries_and_keys=True)


@pytest.mark.parametrize("arch,model_type", [("bert-mlm", "bert"), ("gpt2", "gpt2")])
def test_neuron_params_equal_bertviz_own(models, arch, model_type):
    text = "the dogs near the cat run"
    want = _bertviz_reference(models[arch], model_type, text)["all"]
    params = neuron_view.neuron_params(neuron_data(models[arch], text), layer=1, head=2)
    assert set(params) == {"attention", "default_filter", "root_div_id", "bidirectional", "display_mode", "layer", "head"}
    assert (params["default_filter"], params["layer"], params["head"]) == ("all", 1, 2)
    assert params["bidirectional"] == (model_type == "bert")
    got = params["attention"]["all"]
    assert set(got) == {"attn", "queries", "keys", "left_text", "right_text"}
    assert got["left_text"] == got["right_text"] == want["left_text"]
    for key, tol in (("attn", 1e-4), ("queries", 1e-3), ("keys", 1e-3)):
        np.testing.assert_allclose(np.array(got[key]), np.array(want[key]), atol=tol, err_msg=key)


def test_neuron_params_sentence_pair_filters(models):
    v = neuron_data(models["bert-pretraining"], "the cat sleeps.", "the dogs run.")
    b = next(i for i, t in enumerate(v.tokens) if t.segment == 1)
    n, d = len(v.tokens), v.head_dim
    att = neuron_view.neuron_params(v, layer=0)["attention"]
    assert list(att) == ["all", "aa", "ab", "ba", "bb"]  # bertviz's filter names (its <select> values)
    sizes = {"a": b, "b": n - b}
    for name in ("aa", "ab", "ba", "bb"):
        nq, nk = sizes[name[0]], sizes[name[1]]
        f = att[name]
        assert np.array(f["attn"]).shape == (2, 4, nq, nk)
        assert np.array(f["queries"]).shape == (2, 4, nq, d) and np.array(f["keys"]).shape == (2, 4, nk, d)
        assert len(f["left_text"]) == nq and len(f["right_text"]) == nk
    np.testing.assert_allclose(np.array(att["ab"]["attn"]), v.attention[:, :, :b, b:], atol=1e-4)
    page = neuron_view.neuron_html(v, 0)
    assert '<select id="filter">' in page and '<option value="ba">Sentence B -> Sentence A</option>' in page


def test_neuron_params_fold_a_different_scale_into_the_queries(models):
    v = neuron_data(models["bert-mlm"], TEXT)
    scaled = dataclasses.replace(v, scale=v.scale * 2)
    q = np.array(neuron_view.neuron_params(scaled, 0)["attention"]["all"]["queries"])
    k = np.array(neuron_view.neuron_params(scaled, 0)["attention"]["all"]["keys"])
    shown = q[0, 0] @ k[0, 0].T / np.sqrt(v.head_dim)  # what bertviz's JS puts in its q . k column
    want = v.queries[0, 0] @ v.keys[0, 0].T * scaled.scale[0]  # the model's score
    np.testing.assert_allclose(shown, want, atol=5e-3)


def test_neuron_page_sends_one_layer_when_all_would_be_too_big(models, monkeypatch):
    v = neuron_data(models["bert-mlm"], TEXT)
    assert neuron_view.sent_layers(v, 1) == [0, 1]
    monkeypatch.setattr(neuron_view, "MAX_NUMBERS", neuron_view.numbers_per_layer(v) * 2 - 1)
    params = neuron_view.neuron_params(v, layer=1, head=3)
    assert len(params["attention"]["all"]["attn"]) == 1 and params["layer"] == 0 and params["head"] == 3
    np.testing.assert_allclose(np.array(params["attention"]["all"]["attn"][0]), v.attention[1], atol=1e-4)
    assert "})(\"bertviz-" in neuron_view.neuron_html(v, 1) and ", [1]);" in neuron_view.neuron_html(v, 1)


def test_neuron_page_is_offline_and_escapes_user_text(models):
    v = neuron_data(models["gpt2"], "</script><script>alert(1)</script> the cat")
    assert any("<" in t.text for t in v.tokens)
    page = neuron_view.neuron_html(v, layer=1, head=0)
    assert "cdnjs" not in page and "<script src" not in page and "require.config" not in page
    assert page.count("</script>") == 4  # jQuery, d3, the shim, params + bertviz: user text closes nothing
    params = json.loads(re.search(r"window\.bertviz_params = (.*?);\n", page).group(1))
    assert params["attention"]["all"]["left_text"] == bertviz_view.prettify([t.text for t in v.tokens])
    # a tokenizer that keeps `</script>` as one token (a word-level vocabulary) is escaped the same way
    whole = dataclasses.replace(v, tokens=[dataclasses.replace(v.tokens[0], text="</script><b>"), *v.tokens[1:]])
    page = neuron_view.neuron_html(whole, layer=1, head=0)
    assert page.count("</script>") == 4 and "\\u003c/script\\u003e\\u003cb\\u003e" in page
    assert "window.d3.svg.line()" in page  # the d3 3 shim for d3.line()
    # scaled to fit its frame (down to MIN_SCALE, then scrolling): the fit script runs on the page's root div
    assert "getBBox()" in page and re.search(r'\}\)\("bertviz-[0-9a-f]+", ' + re.escape(str(neuron_view.MIN_SCALE)) + r"\);", page)
    assert neuron_view.frame_height(v) == len(v.tokens) * 26 + 160


def test_neuron_page_refuses_long_inputs(models, monkeypatch):
    v = neuron_data(models["bert-mlm"], TEXT)
    monkeypatch.setattr(bertviz_view, "MAX_TOKENS", 4)
    with pytest.raises(bertviz_view.BertvizUnavailable, match="up to 4 tokens"):
        neuron_view.neuron_html(v, 0)


# ---------------------------------------------------------------------------------------------------
# the Attention page (AppTest) on the shipped demo BERT


@pytest.fixture
def demo_app(monkeypatch):
    if not (ASSETS_MODELS / "bert" / "config.json").is_file():
        pytest.skip(f"needs the demo models in {ASSETS_MODELS} (make demo-models)")
    from app import common

    monkeypatch.setenv("LMSCOPE_DEMO_MODELS", str(ASSETS_MODELS))
    common.listed_models.clear()
    common.load_cached.clear()  # `demo/bert` may name another test's demo folder in the app's resource cache
    yield
    common.listed_models.clear()
    common.load_cached.clear()


def _attention_page(**params):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(MAIN, default_timeout=60)
    at.query_params.update(params)
    at.switch_page("views/attention.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_attention_page_neuron_view_on_the_demo_bert(demo_app):
    at = _attention_page(model="demo/bert", text="the dogs near the cat run quickly .", layer="2", head="1",
                         panel="bertviz", bertviz="neuron")
    frames = at.get("iframe")
    assert len(frames) == 1
    src = frames[0].proto.srcdoc
    assert "renderVisExpanded" in src and "cdnjs" not in src  # bertviz's neuron view, offline
    params = json.loads(re.search(r"window\.bertviz_params = (.*?);\n", src).group(1))
    assert (params["layer"], params["head"]) == (2, 1)  # opened at the page's layer and head
    assert params["attention"]["all"]["left_text"][:3] == ["[CLS]", "the", "dogs"]
    assert any(b.label == "Download bertviz HTML" for b in at.get("download_button"))
    assert at.query_params["bertviz"] == "neuron"
    next(r for r in at.radio if r.key == "qp_bertviz").set_value("head").run()
    assert "drawCheckboxes" in at.get("iframe")[0].proto.srcdoc  # back to the head view


def test_attention_page_neuron_view_says_why_not(demo_app, monkeypatch):
    from model.backends.torch_backend import TorchBackend

    monkeypatch.setattr(TorchBackend, "qk_unavailable", lambda self: "no queries and keys on this path")
    at = _attention_page(model="demo/bert", text="the cat sleeps .", panel="bertviz", bertviz="neuron")
    assert not at.get("iframe")
    assert any("no queries and keys on this path" in i.value for i in at.info)
