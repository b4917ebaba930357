"""The toy-world demo models' agreement figures as shipped (assets/models/DEMO_QUALITY.json; skipped without the
models): every toy-world model has agreement per probe kind, measured on held-out text and probes with no
sentence from training (overlap 0, the overlap before the dedupe stored), the causal demo models pass
same-number attractors, the shortcut models are labelled by failing them, and docs/demo-models.md quotes the
same per-kind figures."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from model.registry import ASSETS_MODELS

QUALITY = ASSETS_MODELS / "DEMO_QUALITY.json"
DOC = Path(__file__).resolve().parents[2] / "docs" / "demo-models.md"
TOY = ["bert", "roberta", "albert", "gpt2", "elmo", "gpt2-shortcut", "elmo-shortcut"]
KINDS = {"all", "none", "same", "opposite", "preposition", "relative", "same/preposition", "same/relative",
         "opposite/preposition", "opposite/relative"}


@pytest.fixture(scope="module")
def quality() -> dict:
    present = [m for m in TOY if (ASSETS_MODELS / m / "config.json").is_file()]
    if not present or not QUALITY.is_file():
        pytest.skip(f"no toy-world demo models in {ASSETS_MODELS} (make demo-models)")
    q = json.loads(QUALITY.read_text())
    assert not [m for m in present if m not in q], "toy-world demo models without a DEMO_QUALITY.json entry"
    return {m: q[m] for m in present}


def test_every_toy_world_model_has_agreement_per_kind_on_deduplicated_text(quality):
    for name, q in quality.items():
        assert set(q["agreement_by_kind"]) == KINDS == set(q["agreement_probes_by_kind"]), name
        assert q["agreement_probes_by_kind"]["all"] == q["agreement_probes"] == 1000, name
        assert q["probe_sentences_in_training"] == 0 and q["eval_sentences_in_training"] == 0, name
        assert q["eval_sentences_seen_in_training_before_dedupe"] > 0, name  # the overlap was real, and measured
        assert q["eval_sentences_scored"] + q["eval_sentences_seen_in_training_before_dedupe"] == q["eval_sentences"], name


def test_causal_demo_models_pass_same_number_attractors_and_the_shortcut_models_do_not(quality):
    for name in ("gpt2", "elmo"):
        if name in quality:
            assert quality[name]["agreement_by_kind"]["same"] >= 0.9, name
    for name in ("gpt2-shortcut", "elmo-shortcut"):
        if name in quality:
            k = quality[name]["agreement_by_kind"]
            assert k["opposite"] >= 0.99 and k["same/preposition"] < 0.1, (name, k)
            assert "description.txt" in {p.name for p in (ASSETS_MODELS / name).iterdir()}, name  # labelled


def test_the_docs_quote_the_shipped_per_kind_figures(quality):
    rows = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        m = re.match(r"\| demo/(\S+) \|.*\| ([\d.]+)% \| ([\d.]+)% \| ([\d.]+)% \| ([\d.]+)% \| ([\d.]+)% \|$", line)
        if m:
            rows.setdefault(m.group(1), set()).add(tuple(float(x) for x in m.groups()[1:]))
    for name, q in quality.items():
        k = q["agreement_by_kind"]
        want = tuple(round(100 * k[g], 1) for g in ("all", "none", "same", "opposite", "same/preposition"))
        assert rows.get(name) == {want}, (name, rows.get(name), want)
