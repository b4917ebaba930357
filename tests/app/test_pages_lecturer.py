"""Issue 15 in Streamlit's AppTest (tiny random models, through app/main.py): what needs no real browser.

- Compare reads a long text only as far as the models do, says so per model, and bounds its figures.
- Tokenization takes a model loaded by path: as the sidebar's model, in the compare list, from `?models=`;
  a path that is no model gets one clear message.
- Attention forgets the selected token when the text changes; its "Lines / token" (`lines`) and Masked LM's
  "Top k" (`topk`) are separate keys.
"""
from __future__ import annotations

import shutil
from functools import partial
from pathlib import Path

import pytest

from app_helpers import chart, open_page, texts


@pytest.fixture(scope="module")
def roots(tiny_models, tmp_path_factory) -> dict[str, Path]:
    """The tiny models as the demo folder, and a copy of the tiny BERT in a folder of LMSCOPE_MODEL_ROOTS."""
    own = tmp_path_factory.mktemp("own_models")
    shutil.copytree(tiny_models["bert-mlm"], own / "my-bert")
    return {"demo": next(iter(tiny_models.values())).parent, "own": own, "path": own / "my-bert"}


@pytest.fixture(autouse=True)
def env(roots, monkeypatch):
    from app import common

    monkeypatch.setenv("LMSCOPE_DEMO_MODELS", str(roots["demo"]))
    monkeypatch.setenv("LMSCOPE_MODEL_ROOTS", str(roots["own"]))
    common.listed_models.clear()
    yield
    common.listed_models.clear()


app = partial(open_page, first_run=False)  # a link that opens the page directly


# ---------------------------------------------------------------------------------------------------


def test_compare_reads_a_long_text_as_far_as_the_models_do():
    from app.figures.compare import LENS_TEXT_TOKENS, MAX_CHAR_TICKS
    from app.views.compare import MAX_CHARS

    text = "the dogs near the cat run quickly; the cat near the dogs sleeps. " * 400  # 26,000 characters
    at = app("compare", model="demo/bert-mlm", model2="demo/gpt2", text=text)
    warnings = texts(at, "warning")
    for name in ("demo/bert-mlm", "demo/gpt2"):  # each model says how far it reads (64 positions)
        assert any(w.startswith(f"{name}: the input is ") and "reads at most 64" in w for w in warnings), warnings
    aligned = chart(at, "compare-aligned")
    shown = int(aligned["layout"]["xaxis"]["range"][1])
    assert 50 < shown < 400  # what 64 tokens cover, not 26,000 characters
    info = texts(at, "info")
    assert any(i.startswith(f"Shown below: the first {shown:,} of {len(text):,} characters") and f"{MAX_CHARS:,}" in i
               for i in info), info
    assert aligned["layout"]["xaxis"]["tickmode"] == "auto" and aligned["layout"]["xaxis"]["nticks"] <= MAX_CHAR_TICKS
    assert max(b + w for tr in aligned["data"] for b, w in zip(tr["base"], tr["x"])) <= shown
    assert chart(at, "logit-lens")["data"][0]["texttemplate"] == "%{text}"  # 64 tokens: cells still written
    assert LENS_TEXT_TOKENS == 64

    short = "the dogs near the cat run."
    at.text_area(key="qp_text").set_value(short).run()
    aligned = chart(at, "compare-aligned")
    assert aligned["layout"]["xaxis"]["ticktext"][:3] == ["t", "h", "e"]  # short text: one label per character
    assert not any(i.startswith("Shown below") for i in texts(at, "info"))


@pytest.mark.parametrize("n", [64, 65, 400])
def test_logit_lens_figure_writes_cell_text_up_to_its_limit(n):
    import numpy as np

    from app.figures import compare as F
    from model.results import LogitLens, Token

    rng = np.random.default_rng(0)
    layers, k = 3, 2
    tokens = [Token(f"w{i}", i, 2 * i, 2 * i + 1, False, i, 0) for i in range(n)]
    lens = LogitLens(ids=rng.integers(0, 50, (layers, n, k)), probs=rng.random((layers, n, k), dtype=np.float32),
                     tokens=[[[f"w{(i + l) % n}", "x"] for i in range(n)] for l in range(layers)],
                     actual_prob=rng.random((layers, n), dtype=np.float32))
    hm = F.logit_lens_figure(lens, tokens, causal=False).data[0]
    assert (hm.texttemplate == "%{text}") == (n <= F.LENS_TEXT_TOKENS)
    assert hm.text[1][0] == "w1"  # the top guess stays in the hover text


def test_tokenization_takes_a_model_loaded_by_path(roots):
    path = str(roots["path"])
    at = app("tokenization", model=path, text="the dogs near the cat", models=f"demo/gpt2,{path},/no/such/model")
    table = at.dataframe[0].value
    assert list(table["model"]) == ["demo/gpt2", path]
    errors = texts(at, "error")
    assert len(errors) == 1 and errors[0].startswith("Cannot load '/no/such/model': no such model"), errors
    box = at.multiselect(key="qp_models")
    assert path in box.options and path in box.value
    # the sidebar's model (a path) can be added to the list
    box.set_value(["demo/gpt2"]).run()
    assert list(at.dataframe[0].value["model"]) == ["demo/gpt2"]
    at.multiselect(key="qp_models").set_value(["demo/gpt2", path]).run()
    assert list(at.dataframe[0].value["model"]) == ["demo/gpt2", path]
    assert at.query_params["models"] == f"demo/gpt2,{path}"


def test_attention_forgets_the_selected_token_when_the_text_changes():
    at = app("attention", model="demo/bert-mlm", text="the dogs near the cat run.", token="3")
    assert at.selectbox(key="qp_token").value == 3  # a shared link keeps its token
    at.selectbox(key="qp_token").set_value(5).run()
    assert at.query_params["token"] == "5"
    at.text_area(key="qp_text").set_value("a cat.").run()
    assert at.selectbox(key="qp_token").value is None and "token" not in at.query_params
    assert not any("Token 5" in m for m in texts(at, "markdown"))
    at.selectbox(key="qp_token").set_value(2).run()  # the same text: the choice stays
    at.slider(key="qp_layer").set_value(1).run()
    assert at.selectbox(key="qp_token").value == 2


def test_attention_lines_and_masked_lm_top_k_are_separate_keys():
    at = app("attention", model="demo/bert-mlm", text="the dogs near the cat run.", lines="5", topk="7")
    assert at.number_input(key="qp_lines").value == 5
    assert at.query_params["lines"] == "5" and "topk" not in at.query_params
    at.switch_page("views/masked_lm.py").run()
    assert not at.exception
    assert at.number_input(key="qp_topk").value == 7  # Masked LM's own value from the link, not Attention's 5
    at.number_input(key="qp_topk").set_value(4).run()
    at.switch_page("views/attention.py").run()
    assert at.number_input(key="qp_lines").value == 5
