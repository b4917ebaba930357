"""What each model knows, on the pages (AppTest, tiny random models named like the demo models): the picker
lists real-English demo models first with the picked one's group and line; a text mostly outside a model's
vocabulary gets a warning naming the model to use; a truncation warning names the model's length and a
listed model that reads the text whole."""
from __future__ import annotations

from functools import partial

import pytest

from app_helpers import open_page

OUTSIDE = "Photosynthesis transforms luminous radiation into chemical potential"


@pytest.fixture(scope="module", autouse=True)
def demo_models(tmp_path_factory):
    from tiny_models import build

    root = tmp_path_factory.mktemp("demo")
    build("bert-pretraining", root).rename(root / "bert")  # a "toy world" BERT: 64 positions
    (root / "en-tmp").mkdir()
    build("bert-pretraining", root / "en-tmp", positions=512).rename(root / "en-bert")  # reads 512
    build("gpt2", root)
    mp = pytest.MonkeyPatch()
    mp.setenv("LMSCOPE_DEMO_MODELS", str(root))
    from app import common

    common.listed_models.clear()
    yield root
    common.listed_models.clear()
    mp.undo()


app = partial(open_page, first_run=False)  # a link that opens the page directly


def test_picker_groups_and_describes_the_demo_models():
    at = app("tokenization", model="demo/bert", text="the dog", models="demo/bert")
    box = next(s for s in at.sidebar.selectbox if s.label == "Model")
    assert box.options[:3] == ["demo/en-bert", "demo/bert", "demo/gpt2"]
    captions = " ".join(c.value for c in at.sidebar.caption)
    assert "toy world" in captions and "masked LM of a generated toy world" in captions


def test_text_outside_the_vocabulary_names_the_model_to_use():
    at = app("tokenization", model="demo/bert", text=OUTSIDE, models="demo/bert")
    warnings = [w.value for w in at.warning]
    assert any("outside demo/bert's vocabulary" in w and "use demo/en-bert" in w for w in warnings), warnings


def test_truncation_names_the_length_and_a_longer_reader():
    at = app("masked_lm", model="demo/bert", text="the dog [MASK] . " * 40)
    warnings = [w.value for w in at.warning]
    assert any("demo/bert reads at most 64" in w and "demo/en-bert (512 tokens) reads it whole" in w
               for w in warnings), warnings
