"""AppTest run of the Agreement probes page (app/views/probes.py) through app/main.py's navigation, on tiny
random models whose tokenizers know the toy world's words, and on an encoder without an LM head."""
from __future__ import annotations

import shutil

import pytest

from app_helpers import open_page

@pytest.fixture(scope="module")
def demo(tiny_models, tmp_path_factory):
    from tiny_models import build_toyworld

    root = tmp_path_factory.mktemp("demo_probes")
    build_toyworld("gpt2", root)
    build_toyworld("bert-mlm", root)
    shutil.copytree(tiny_models["bert-encoder"], root / "encoder")
    return root


@pytest.mark.parametrize("model", ["demo/toyworld-gpt2", "demo/toyworld-bert-mlm"])
def test_probes_page_shows_agreement_per_kind(env, model):
    at = open_page("probes", model=model, probes="50")
    assert not at.error, [e.value for e in at.error]
    assert at.title[0].value == "Agreement probes"
    assert [m.label for m in at.metric] == ["no attractor", "same-number attractor", "opposite-number attractor"]
    per_kind, examples = at.dataframe[0].value, at.dataframe[1].value
    assert list(per_kind["kind"])[:4] == ["all", "none", "same", "opposite"]
    assert per_kind["probes"].iloc[0] + sum(int(s.split()[0]) for s in [i.value for i in at.info] if "skipped" in s) == 50
    assert per_kind["probes"].iloc[0] == per_kind["probes"].iloc[1:4].sum()
    assert ((per_kind["agreement %"].dropna() >= 0) & (per_kind["agreement %"].dropna() <= 100)).all()
    assert set(examples["kind"]) <= {"none", "same/preposition", "same/relative", "opposite/preposition", "opposite/relative"}
    assert all(p in (r, w) for p, r, w in zip(examples["prefers"], examples["right form"], examples["wrong form"]))
    assert any(c.proto.id.endswith("fig_agreement") for c in at.get("plotly_chart"))
    assert at.query_params["probes"] in ("50", ["50"])


def test_probes_page_explains_a_model_without_lm_head(env):
    at = open_page("probes", model="demo/encoder", probes="50")
    assert any("masked or a causal LM head" in e.value for e in at.error)
