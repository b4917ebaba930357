"""Every page's first screen, opened with no query string (AppTest through app/main.py): the model each
page prefers (app.common.PAGE_MODELS) and a text that model reads, with a mask on Masked LM.

Two demo folders of tiny models stand in for assets/models with and without the real-English demo models
(demo/en-bert, demo/en-gpt2); a tiny model whose training_record.json names the toy-world corpus stands for
the toy-world demo models. The last test opens every page on the shipped demo models (assets/models) and
checks the text has no unknown token for the model shown.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from app import common

MAIN = str(Path(__file__).resolve().parents[2] / "app" / "main.py")
PAGES = ("models", "tokenization", "attention", "masked_lm", "generation", "compare", "export")
TOY = {"config": {"corpus": "toyworld", "arch": "bert"}, "status": "done"}


def _copy(src: Path, dst: Path, toy: bool) -> None:
    shutil.copytree(src, dst)
    if toy:
        (dst / "training_record.json").write_text(json.dumps(TOY))


@pytest.fixture(scope="module")
def folders(tiny_models, tmp_path_factory):
    """{"with-en": folder with demo/en-bert and demo/en-gpt2, "toy-only": without them}. Both hold an
    ALBERT first in alphabetical order (what the pages used to open on) and toy-world bert and gpt2."""
    out = {}
    for name, en in (("with-en", True), ("toy-only", False)):
        root = tmp_path_factory.mktemp(name)
        _copy(tiny_models["albert-pretraining"], root / "albert", toy=True)
        _copy(tiny_models["bert-mlm"], root / "bert", toy=True)
        _copy(tiny_models["gpt2"], root / "gpt2", toy=True)
        if en:
            _copy(tiny_models["bert-mlm"], root / "en-bert", toy=False)
            _copy(tiny_models["gpt2"], root / "en-gpt2", toy=False)
        out[name] = root
    return out


@pytest.fixture
def use(monkeypatch, tmp_path):
    """use(folder): the app lists the models of `folder` (and an empty runs folder)."""
    def point(folder: Path) -> None:
        monkeypatch.setenv("LMSCOPE_DEMO_MODELS", str(folder))
        monkeypatch.setenv("LMSCOPE_RUNS", str(tmp_path / "runs"))
        common.listed_models.clear()

    yield point
    common.listed_models.clear()


def first_screen(page: str) -> AppTest:
    """`page` opened with no query string, as a student typing the page's address would."""
    at = AppTest.from_file(MAIN, default_timeout=120)
    at.switch_page(f"views/{page}.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def value(at: AppTest, kind: str, key: str):
    return next(w for w in getattr(at, kind) if w.key == key).value


def test_the_preference_lists_name_only_models_that_can_show_their_page():
    for (page, key), names in common.PAGE_MODELS.items():
        assert names and all(n.startswith("demo/") for n in names)
    assert common.PAGE_MODELS[("generation", "model")][0] == "demo/gpt2"
    assert common.PAGE_MODELS[("probes", "model")][0] == "demo/gpt2"  # not demo/elmo, the first causal LM by name
    assert all("[MASK]" in kinds["mask"] for kinds in common.TEXTS.values())
    assert all("[MASK]" not in kinds[k] for kinds in common.TEXTS.values() for k in ("plain", "prompt"))


@pytest.mark.parametrize("folder,bert,gpt2,family", [("with-en", "demo/bert", "demo/gpt2", "toyworld"),
                                                     ("toy-only", "demo/bert", "demo/gpt2", "toyworld")])
def test_masked_lm_and_generation_open_on_the_model_they_suit_with_a_text_it_reads(folders, use, folder, bert, gpt2,
                                                                                 family):
    use(folders[folder])
    at = first_screen("masked_lm")
    assert value(at, "selectbox", "qp_model") == bert  # not demo/albert, the first in alphabetical order
    assert value(at, "text_area", "qp_text") == common.TEXTS[family]["mask"]
    assert not at.warning and not at.error  # no "No mask in the input"
    charts = [c.key for c in at.get("plotly_chart")]
    assert sum(k.startswith("fig_masked-lm-") for k in charts) == 1, charts  # the predictions at the mask
    at = first_screen("generation")
    assert value(at, "selectbox", "qp_model") == gpt2
    assert value(at, "text_area", "qp_text") == common.TEXTS[family]["prompt"]
    assert not at.warning and not at.error
    at = first_screen("attention")
    assert value(at, "selectbox", "qp_model") == bert
    assert value(at, "text_area", "qp_text") == common.TEXTS[family]["plain"]


def test_the_default_text_follows_the_model_but_a_typed_text_stays(folders, use):
    use(folders["with-en"])
    at = first_screen("masked_lm")
    assert value(at, "text_area", "qp_text") == "the dog near the cats [MASK] ."  # a text demo/bert reads
    next(s for s in at.selectbox if s.key == "qp_model").set_value("demo/en-bert").run()
    assert value(at, "text_area", "qp_text") == "The capital of France is [MASK]."
    assert at.query_params["text"] == "The capital of France is [MASK]."
    next(t for t in at.text_area if t.key == "qp_text").set_value("the [MASK] sleeps .").run()
    next(s for s in at.selectbox if s.key == "qp_model").set_value("demo/bert").run()
    assert value(at, "text_area", "qp_text") == "the [MASK] sleeps ."  # typed by the user: kept
    assert not at.exception


def test_a_linked_text_is_kept_even_when_it_is_another_pages_default(folders, use):
    use(folders["toy-only"])
    at = AppTest.from_file(MAIN, default_timeout=120)
    at.query_params.update({"text": "the dog near the cats [MASK] ."})
    at.switch_page("views/attention.py")
    at.run()
    assert value(at, "text_area", "qp_text") == "the dog near the cats [MASK] ."


SHIPPED = Path(__file__).resolve().parents[2] / "assets" / "models"


@pytest.mark.slow
def test_every_page_opens_on_a_shipped_demo_model_with_a_text_it_reads(use):
    """On the shipped demo models: each page's first screen shows no error and no warning, and its text
    is read by the model the page opened on: no unknown token, and no word cut into pieces (the toy-world
    vocabulary has every word it knows as one token; "The quick brown fox..." fell apart into bytes)."""
    if not all((SHIPPED / m / "config.json").is_file() for m in ("bert", "gpt2")):
        pytest.skip("needs the shipped demo models in assets/models (make demo-models)")
    from app.figures.text import is_unknown
    from model.inspect import encode

    def unread(name: str, text: str) -> list[str]:
        words = [t for t in encode(common.load_cached(name), text).tokens if not t.special]
        pieces = [t.text for t in words if is_unknown(t)]
        return pieces + ([f"{len(words)} tokens for {len({t.word for t in words})} words"]
                         if len({t.word for t in words}) != len(words) else [])

    use(SHIPPED)
    for page in PAGES:
        at = first_screen(page)
        assert not at.error and not at.warning, (page, [e.value for e in at.error], [w.value for w in at.warning])
        name = value(at, "selectbox", "qp_model")
        assert name == ("demo/gpt2" if page == "generation" else "demo/bert"), page
        texts = [t.value for t in at.text_area if t.key == "qp_text"]
        for text in texts:  # (the Models page has no text box)
            assert not unread(name, text), (page, text, unread(name, text))
        if page == "compare":
            assert value(at, "selectbox", "qp_model2") == "demo/gpt2"
            assert not unread("demo/gpt2", texts[0])
