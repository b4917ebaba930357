"""The Models, Tokenization, Attention and Masked LM pages in Streamlit's AppTest, through app/main.py,
with LMSCOPE_DEMO_MODELS pointing at tiny random models. Each test drives the real widgets and reads the
rendered elements (plotly specs, iframes, messages), never a screenshot."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

MAIN = str(Path(__file__).resolve().parents[2] / "app" / "main.py")
PAGES = {"models": "views/models.py", "tokenization": "views/tokenization.py", "attention": "views/attention.py",
         "masked_lm": "views/masked_lm.py"}


@pytest.fixture(scope="module", autouse=True)
def demo_models(tiny_models):
    root = str(next(iter(tiny_models.values())).parent)
    mp = pytest.MonkeyPatch()
    mp.setenv("LMSCOPE_DEMO_MODELS", root)
    from app import common

    common.listed_models.clear()  # the listing is cached for 15 s per process
    yield root
    common.listed_models.clear()
    mp.undo()


def app(page: str, **params) -> AppTest:
    """Open `page` with URL query parameters, as a browser following a shared link would."""
    at = AppTest.from_file(MAIN, default_timeout=60)
    at.query_params.update(params)
    at.switch_page(PAGES[page])
    return at.run()


def ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    return at


def charts(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def by_key(at: AppTest, kind: str, key: str):
    return next(w for w in getattr(at, kind) if w.key == key)


def texts(at: AppTest, kind: str) -> list[str]:
    return [e.value for e in getattr(at, kind)]


@pytest.mark.parametrize("page,title", [("models", "Models"), ("tokenization", "Tokenization"),
                                        ("attention", "Attention"), ("masked_lm", "Masked LM")])
def test_each_page_renders_through_the_frame(page, title):
    at = ok(app(page, model="demo/bert-pretraining", text="the cat sleeps."))
    assert texts(at, "title") == [title]
    assert any(t.label == "Lecture mode" for t in at.toggle)  # drawn by main.py, so the frame ran
    assert at.query_params["model"] == "demo/bert-pretraining"
    assert at.query_params["text"] == "the cat sleeps."


# ---------------------------------------------------------------------------------------------------
# Attention


def test_attention_reads_the_url_and_the_head_slider_changes_the_heatmap():
    at = ok(app("attention", model="demo/bert-mlm", text="the dogs near the cat run.", layer="1", head="2"))
    assert by_key(at, "slider", "qp_layer").value == 1 and by_key(at, "slider", "qp_head").value == 2
    heat = charts(at)[0]
    assert "Layer 1, head 2" in heat["layout"]["title"]["text"]
    z_before = heat["data"][0]["z"]
    by_key(at, "slider", "qp_head").set_value(3).run()
    heat = ok(at) and charts(at)[0]
    assert "Layer 1, head 3" in heat["layout"]["title"]["text"]
    assert heat["data"][0]["z"] != z_before
    assert at.query_params["head"] == "3" and at.query_params["layer"] == "1"


def test_attention_draws_the_shown_layer_first_then_inspects_once_without_predictions(monkeypatch):
    import model.inspect as engine
    import model.progressive as progressive

    calls, inspect, inspect_layer = [], engine.inspect, progressive.inspect_layer
    monkeypatch.setattr(engine, "inspect", lambda *a, **kw: calls.append(("all", kw["predictions"])) or inspect(*a, **kw))
    monkeypatch.setattr(progressive, "inspect_layer",
                        lambda m, text, layer, pair=None: calls.append(("layer", layer)) or inspect_layer(m, text, layer, pair))
    at = ok(app("attention", model="demo/gpt2", text="the dogs near the cat run."))
    assert calls == [("layer", 0), ("all", False)]  # layer 0's map from a stopped forward, then the rest
    first = charts(at)[0]
    assert first["layout"]["title"]["text"].startswith("Layer 0, head 0:") and len(charts(at)) == 3
    by_key(at, "slider", "qp_head").set_value(1).run()
    by_key(at, "slider", "qp_head").set_value(0).run()
    assert ok(at) and calls == [("layer", 0), ("all", False)]  # both reruns drawn from the cached inspection
    assert charts(at)[0] == first  # the map drawn first is the map drawn from the whole inspection
    by_key(at, "text_area", "qp_text").set_value("the cat sleeps.").run()
    assert ok(at) and calls[2:] == [("layer", 0), ("all", False)]
    calls.clear()
    ok(app("attention", model="demo/gpt2", text="the dogs near the cat run.", layer="1"))
    assert calls == [("all", False)]  # the second of 2 layers: no stopped forward first (it would run both twice)


def test_attention_out_of_range_url_values_are_clamped():
    at = ok(app("attention", model="demo/bert-mlm", text="the cat.", layer="99", head="abc"))
    assert by_key(at, "slider", "qp_layer").value == 1  # tiny models have 2 layers
    assert by_key(at, "slider", "qp_head").value == 0


def _map_sizes(at: AppTest) -> list[int]:
    sizes = []
    for s in charts(at):
        for tr in s["data"]:
            z = tr.get("z")
            if isinstance(z, dict):
                sizes.append(int(np.prod([int(v) for v in str(z["shape"]).split(",")])))
    return sizes


@pytest.mark.parametrize("repeat", [3, 9])
def test_attention_sends_one_map_and_fixed_size_thumbnails(repeat):
    at = ok(app("attention", model="demo/gpt2", text="the dogs near the cat run quickly; " * repeat))
    n = len(charts(at)[0]["data"][0]["x"])
    sizes = _map_sizes(at)
    assert sizes[0] == n * n  # the selected head's map, and no other N x N map
    assert sizes[1:] == [(2 * 17 - 1) * (4 * 17 - 1)]  # 2 x 4 heads of 16 x 16 thumbnails at any length


def test_attention_selected_token_and_panels():
    at = ok(app("attention", model="demo/bert-mlm", text="the dogs near the cat run."))
    by_key(at, "selectbox", "qp_token").set_value(3).run()
    ok(at)
    assert any("Token 3" in m for m in texts(at, "markdown"))
    assert len(charts(at)[0]["layout"]["shapes"]) == 2  # its row and column outlined
    assert at.query_params["token"] == "3"
    for panel in ("rollout", "head statistics", "head view"):
        by_key(at, "radio", "qp_panel").set_value(panel).run()
        ok(at)
    assert at.query_params["panel"] == "head view"
    assert any(c["layout"]["title"]["text"].startswith("Head view") for c in charts(at))


def test_attention_bertviz_is_offline_and_escapes_user_text():
    at = ok(app("attention", model="demo/bert-mlm", text="<script>alert(1)</script> cat", panel="bertviz"))
    frames = at.get("iframe")
    assert len(frames) == 1
    src = frames[0].proto.srcdoc
    assert "cdnjs" not in src and "<script src" not in src and src.count("</script>") == 4
    assert "drawCheckboxes" in src  # bertviz's head view
    by_key(at, "radio", "qp_bertviz").set_value("model").run()
    assert "LAYER_COLORS" in ok(at).get("iframe")[0].proto.srcdoc  # bertviz's model view
    assert at.query_params["bertviz"] == "model"


def test_attention_bertviz_only_for_short_inputs(monkeypatch):
    from app.widgets import bertviz_view

    monkeypatch.setattr(bertviz_view, "MAX_TOKENS", 5)
    at = ok(app("attention", model="demo/bert-mlm", text="the dogs near the cat run.", panel="bertviz"))
    assert not at.get("iframe")
    assert any("at most 5 tokens" in i for i in texts(at, "info"))


@pytest.mark.parametrize("text", ["", "   "])
def test_attention_empty_text_is_an_error_message(text):
    at = ok(app("attention", model="demo/bert-mlm", text="x"))
    by_key(at, "text_area", "qp_text").set_value(text).run()
    ok(at)
    assert any("empty" in e for e in texts(at, "error"))
    assert not at.get("plotly_chart")


def test_unknown_model_in_the_url_is_an_error_message():
    at = ok(app("attention", model="demo/nope", text="the cat."))
    assert any("Cannot load 'demo/nope'" in e for e in texts(at, "error"))


# ---------------------------------------------------------------------------------------------------
# Masked LM


def test_masked_lm_lists_predictions_for_each_mask():
    at = ok(app("masked_lm", model="demo/bert-mlm", text="the [MASK] near the cat [MASK] quickly.", topk="4"))
    specs = [c for c in charts(at) if c["data"][0]["type"] == "bar"]
    assert len(specs) == 2
    assert all(len(s["data"][0]["y"]) == 4 for s in specs)
    assert all(s["data"][0]["y"][0].startswith("1. ") for s in specs)


def test_masked_lm_accepts_the_other_mask_spelling_for_roberta():
    at = ok(app("masked_lm", model="demo/roberta-mlm", text="the [MASK] near the cat."))
    assert len([c for c in charts(at) if c["data"][0]["type"] == "bar"]) == 1


def test_masked_lm_picking_words_masks_them():
    at = ok(app("masked_lm", model="demo/bert-mlm", text="the dogs near the cat run."))
    assert not charts(at) and any("No mask" in w for w in texts(at, "warning"))
    pills = by_key(at, "button_group", "qp_masked")  # the sentence's tokens as clickable pills
    assert list(pills.options)[:3] == ["the", "dogs", "near"]
    pills.set_value([2, 5]).run()
    ok(at)
    assert [c.value for c in at.code] == ["the [MASK] near the [MASK] run."]
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart") if c.key.startswith("fig_masked-lm-")]
    assert len(specs) == 2 and "(was dogs)" in specs[0]["layout"]["title"]["text"]  # (the saliency strip aside)
    assert at.query_params["masked"] == "2,5"
    # each hidden token's rank over the whole vocabulary and its probability, in the top k or not
    captions = [c for c in texts(at, "caption") if c.startswith("Hidden token")]
    assert len(captions) == 2 and all(re.search(r"rank \d+.*p = ", c) for c in captions)
    # a new text starts with nothing picked (the indices belonged to the old one)
    by_key(at, "text_area", "qp_text").set_value("the cat sleeps.").run()
    assert by_key(ok(at), "button_group", "qp_masked").value == [] and "masked" not in at.query_params


def test_masked_lm_pair_probability_and_reseeding(tiny_models):
    from app.figures import masked_lm as figures
    from model.load import load_model
    from model.corruption import corrupt

    text = "the dogs [MASK] near the cat."
    at = ok(app("masked_lm", model="demo/bert-pretraining", text=text, pair="the cat sleeps."))
    (metric,) = [m for m in at.metric if "follows" in m.label]
    assert 0 <= float(metric.value.rstrip("%")) <= 100
    assert by_key(at, "number_input", "qp_seed").value == 0
    next(b for b in at.button if b.label.startswith("Reseed")).click().run()
    seed = by_key(ok(at), "number_input", "qp_seed").value
    assert seed != 0 and at.query_params["seed"] == str(seed)
    expected = figures.corruption_html(corrupt(load_model(tiny_models["bert-pretraining"]), text, seed).rows)
    assert at.get("html")[-1].proto.body == expected


def test_masked_lm_corruption_panel_follows_the_seed():
    bodies = []
    for seed in ("1", "2", "3", "4"):
        at = ok(app("masked_lm", model="demo/bert-mlm", text="the quick brown fox jumps over the lazy dog and the cat.",
                    seed=seed))
        bodies.append(at.get("html")[-1].proto.body)
    assert len(set(bodies)) > 1
    at = ok(app("masked_lm", model="demo/bert-mlm", text="the quick brown fox jumps over the lazy dog and the cat.", seed="1"))
    assert at.get("html")[-1].proto.body == bodies[0]


def test_masked_lm_on_a_causal_model_explains_why_not():
    at = ok(app("masked_lm", model="demo/gpt2", text="the cat [MASK]."))
    assert any("masked-token predictions" in w for w in texts(at, "warning"))
    assert not charts(at)


def test_masked_lm_empty_text_is_an_error_message():
    at = ok(app("masked_lm", model="demo/bert-mlm", text="x"))
    by_key(at, "text_area", "qp_text").set_value("").run()
    assert any("empty" in e for e in texts(ok(at), "error"))


# ---------------------------------------------------------------------------------------------------
# Tokenization and Models


def test_tokenization_compares_the_chosen_tokenizers():
    at = ok(app("tokenization", model="demo/bert-mlm", text="hello world, unbelievable été",
                models="demo/bert-mlm,demo/gpt2"))
    table = at.dataframe[0].value
    assert list(table["model"]) == ["demo/bert-mlm", "demo/gpt2"]
    assert table.set_index("model").loc["demo/bert-mlm", "unknown"] >= 0
    by_key(at, "multiselect", "qp_models").set_value(["demo/bert-mlm", "demo/gpt2", "demo/albert-pretraining"]).run()
    ok(at)
    assert len(at.dataframe[0].value) == 3
    assert at.query_params["models"] == "demo/bert-mlm,demo/gpt2,demo/albert-pretraining"
    bars = {tr["y"][0] for tr in charts(at)[0]["data"] if tr["type"] == "bar"}
    assert bars == {"demo/bert-mlm", "demo/gpt2", "demo/albert-pretraining"}


def test_tokenization_empty_text_is_an_error_message():
    at = ok(app("tokenization", model="demo/bert-mlm", text="x"))
    by_key(at, "text_area", "qp_text").set_value(" ").run()
    assert any("empty" in e for e in texts(ok(at), "error"))


def test_models_page_describes_two_models_side_by_side():
    at = ok(app("models", model="demo/bert-pretraining", model2="demo/gpt2"))
    assert texts(at, "subheader") == ["demo/bert-pretraining", "demo/gpt2"]
    assert any("causal-lm" in m for m in texts(at, "markdown"))
    by_key(at, "selectbox", "qp_model2").set_value("").run()
    assert texts(ok(at), "subheader") == ["demo/bert-pretraining"]
    assert "model2" not in at.query_params


def test_models_page_loads_a_folder_by_path(demo_models, tmp_path):
    at = ok(app("models"))
    at.text_input(key="models_path").set_value(str(tmp_path))  # in a form: sent with its submit button
    next(b for b in at.button if b.label == "Use this model").click().run()
    assert any("outside the model folders" in e for e in texts(ok(at), "error"))
    path = str(Path(demo_models) / "gpt2")
    at.text_input(key="models_path").set_value(path)
    next(b for b in at.button if b.label == "Use this model").click().run()
    ok(at)
    assert at.query_params["model"] == path
    assert texts(at, "caption")[0] == str(Path(path).resolve())


def test_lecture_mode_injects_css_and_goes_in_the_url():
    at = ok(app("models"))
    by_key(at, "toggle", "qp_lecture").set_value(True).run()
    ok(at)
    assert at.query_params["lecture"] == "1"
    assert any("stMainBlockContainer" in h.proto.body and "font-size: 1.4rem" in h.proto.body for h in at.get("html"))
    at = ok(app("masked_lm", model="demo/bert-mlm", text="the [MASK] sleeps.", lecture="1"))
    assert charts(at)[0]["layout"]["font"]["size"] == 18  # figures follow: large fonts
    by_key(at, "toggle", "qp_lecture").set_value(False).run()
    assert "font" not in charts(ok(at))[0]["layout"] and "lecture" not in at.query_params
