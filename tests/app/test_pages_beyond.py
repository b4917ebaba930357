"""AppTest runs of the views beyond attention (saliency strips on Masked LM, Generation and Attention; the
Neurons, Projector and Corpus search pages) against tiny models, through app/main.py's navigation."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from app_helpers import chart, open_page, texts

@pytest.fixture(scope="module")
def demo(tiny_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("demo_beyond")
    for arch in ("gpt2", "bert-mlm", "bert-encoder"):
        shutil.copytree(tiny_models[arch], root / arch)
    return root


def z_row(spec: dict) -> list[float]:
    import base64

    z = spec["data"][0]["z"]
    if isinstance(z, dict):
        return np.frombuffer(base64.b64decode(z["bdata"]), dtype=np.dtype(z["dtype"])).ravel().tolist()
    return list(np.ravel(z))


# ---------------------------------------------------------------------------------------------------


def test_masked_lm_saliency_strip_matches_the_engine(env, demo):
    from model.attribute import attribute
    from model.load import load_model

    text = "the dogs near the cat [MASK] quickly."
    at = open_page("masked_lm", model="demo/bert-mlm", text=text)
    assert not texts(at, "error")
    spec = chart(at, "saliency")
    top = at.selectbox(key="qp_sal_token").value
    ref = attribute(load_model(demo / "bert-mlm"), text, target_token=top, steps=32)
    np.testing.assert_allclose(z_row(spec), ref.scores, atol=1e-5)
    assert top in spec["layout"]["title"]["text"]
    # another candidate and the other method: new scores, both in the URL
    second = at.selectbox(key="qp_sal_token").options[1]
    at.selectbox(key="qp_sal_token").set_value(second).run()
    at.radio(key="qp_saliency").set_value("grad x input").run()
    assert not at.exception and not texts(at, "error")
    ref2 = attribute(load_model(demo / "bert-mlm"), text, target_token=second, method="grad_x_input")
    np.testing.assert_allclose(z_row(chart(at, "saliency")), ref2.scores, atol=1e-5)
    assert at.query_params["saliency"] == "grad x input" and at.query_params["sal_token"] == second


def test_saliency_is_cached_for_the_server_and_long_inputs_wait_for_a_click(env, monkeypatch):
    import model.attribute
    from app.widgets import saliency

    text = "the cat near the dogs [MASK] quickly."
    first = z_row(chart(open_page("masked_lm", model="demo/bert-mlm", text=text), "saliency"))

    def refuse(*a, **kw):
        raise AssertionError("attribute() ran again")

    with monkeypatch.context() as mp:
        mp.setattr(model.attribute, "attribute", refuse)
        at = open_page("masked_lm", model="demo/bert-mlm", text=text)  # a new session: the server's cache answers
        assert not texts(at, "error") and z_row(chart(at, "saliency")) == first

    monkeypatch.setattr(saliency, "WORK_BUDGET", 1.0)  # every input is now too long to run by itself
    at = open_page("masked_lm", model="demo/bert-mlm", text="the dogs [MASK] .")
    assert any("not run automatically" in i.value and "multiply-adds" in i.value for i in at.info)
    assert not [c for c in at.get("plotly_chart") if c.proto.id.endswith("fig_saliency")]
    at.button(key="saliency_anyway").click().run()
    assert not at.exception and not texts(at, "error")
    assert len(z_row(chart(at, "saliency"))) > 0


def test_generation_and_attention_saliency(env):
    at = open_page("generation", model="demo/gpt2", text="the dogs near the")
    assert not texts(at, "error")
    assert "after token" in chart(at, "saliency")["layout"]["title"]["text"]
    at = open_page("attention", model="demo/gpt2", text="the dogs near the cat", token="2")
    assert not texts(at, "error")
    assert "after token 2" in chart(at, "attention-saliency")["layout"]["title"]["text"]
    at = open_page("attention", model="demo/bert-encoder", text="the dogs near the cat", token="2")
    assert any("no language-model head" in i.value for i in at.info)


def test_neurons_page_draws_the_engines_factors(env, demo):
    from model.load import load_model
    from model.neurons import neurons

    text = "the dogs near the cat run quickly ."
    at = open_page("neurons", model="demo/gpt2", text=text, ffn_layer="1", k="3")
    assert not texts(at, "error")
    spec = chart(at, "neuron-components")
    ref = neurons(load_model(demo / "gpt2"), text, layers=[1], k=3)
    assert len(spec["data"][0]["y"]) == 3 and "layer 1" in spec["layout"]["title"]["text"]
    at.slider(key="qp_k").set_value(4).run()
    assert not at.exception and at.query_params["k"] == "4"
    assert len(chart(at, "neuron-components")["data"][0]["y"]) == 4
    assert ref.factors.shape[1] == 3


def _points(spec: dict) -> int:
    import base64

    total = 0
    for tr in spec["data"]:
        x = tr["x"]
        total += len(np.frombuffer(base64.b64decode(x["bdata"]), dtype=np.dtype(x["dtype"]))) if isinstance(x, dict) else len(x)
    return total


def test_projector_page_pca_colours_and_clicked_point(env, demo, monkeypatch):
    import model.projector
    from model import textsets
    from model.load import load_model
    from model.projector import project, token_states

    warmed = []  # the page starts umap-learn's compilation (here recorded, not run: tens of seconds of CPU)
    monkeypatch.setattr(model.projector, "warm_umap", lambda: warmed.append(1))
    at = open_page("projector", model="demo/bert-mlm", data="english", layer="1", tokens="300", point="5")
    assert not texts(at, "error")
    spec = chart(at, "projector")
    ref = token_states(load_model(demo / "bert-mlm"), textsets.builtin("english"), [1], max_tokens=300)
    assert _points(spec) == len(ref.tokens) == 300 and warmed
    assert {tr["name"] for tr in spec["data"]} <= {"animals", "food", "weather", "sport", "music", "computers", "other"}
    assert any(f"`{ref.tokens[5]}`" in m.value for m in at.markdown)  # the URL's point opens its text
    at.radio(key="qp_color").set_value("position").run()
    assert not at.exception and len(chart(at, "projector")["data"]) == 1
    assert at.query_params["color"] == "position" and at.query_params["point"] == "5"
    x0 = project(ref.layer(1), "pca")[0]
    tr = chart(at, "projector")["data"][0]
    import base64
    xs = np.frombuffer(base64.b64decode(tr["x"]["bdata"]), dtype=np.dtype(tr["x"]["dtype"])) if isinstance(tr["x"], dict) else tr["x"]
    assert abs(float(xs[0]) - float(x0[0])) < 1e-4


def test_projector_bad_upload_is_an_error_message(env):
    at = open_page("projector", model="demo/gpt2", data="upload")
    assert any("Upload a text file" in i.value for i in at.info)


def test_corpus_search_page_lists_the_engines_hits(env, demo):
    from model import textsets
    from model.corpus_search import build_index, query_vector, search
    from model.load import load_model

    q = "the dogs near the cat run quickly ."
    at = open_page("corpus_search", model="demo/bert-mlm", data="english", tokens="300", query=q, token="2", layer="1",
                   hits="5")
    assert not texts(at, "error")
    table = at.dataframe[0].value
    m = load_model(demo / "bert-mlm")
    index = build_index(m, textsets.builtin("english"), max_tokens=300)  # the app's, under LMSCOPE_RUNS
    assert str(index.path).startswith(str(env / "runs" / "search"))
    ref = search(index, query_vector(m, q, 2, 1), 1, k=5)
    assert list(table["token"]) == [h.token for h in ref] and list(table["context"]) == [h.context for h in ref]
    at.radio(key="qp_metric").set_value("l2").run()
    assert not at.exception and at.query_params["metric"] == "l2"


def test_cli_project_and_search(tiny_models, tmp_path, monkeypatch, capsys):
    from app.cli import main

    monkeypatch.setenv("LMSCOPE_RUNS", str(tmp_path / "runs"))
    path = str(tiny_models["gpt2"])
    assert main(["project", path, "--data", "english", "--max-tokens", "60", "--layer", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["method"] == "pca" and len(out["points"]) >= 60 and {"x", "y", "token", "context"} <= set(out["points"][0])
    assert main(["search", path, "the cat runs", "--token", "1", "--data", "english", "--max-tokens", "60", "-k", "3",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["hits"]) == 3 and out["index"].startswith(str(tmp_path / "runs" / "search"))
    assert main(["search", path, "the cat", "--token", "9", "--data", "english", "--max-tokens", "60"]) == 2
    assert main(["neurons", path, "the cat runs", "-k", "2", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["factors"][0]) == 2
