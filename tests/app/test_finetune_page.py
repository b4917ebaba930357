"""The Fine-tune page in AppTest: the form for each mode, bad typed examples refused on the page, and a
finished fine-tuning / distillation job (trained here in-process with tiny models, filed in the queue as
this session's) shown with its record, label probabilities, the head-difference grid and the two models'
distributions (teacher and student; base and LM-fine-tuned masked model); the finished models are listed on the
Models page."""
from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from model.finetune_jobs import DistillRequest, FinetuneRequest
from model.jobs import Job

MAIN = str(Path(__file__).resolve().parents[2] / "app" / "main.py")
TOPICS = Path(__file__).resolve().parents[2] / "assets" / "data" / "topics.csv"
OWNER = "owner-of-the-test-session"
CLF, STUDENT = "finetune-20260101-000000-abcdef", "distill-20260101-000001-abcdef"
LM = "finetune-20260101-000002-abcdef"


@pytest.fixture(scope="module")
def world(tiny_models, tmp_path_factory):
    from model.train.distill import DistillConfig, distill
    from model.train.finetune import FinetuneConfig, finetune
    from model.train.toyworld import generate_corpus

    runs = tmp_path_factory.mktemp("runs")
    root = next(iter(tiny_models.values())).parent
    corpus = tmp_path_factory.mktemp("c") / "toy.txt"
    corpus.write_text("\n\n".join("\n".join(d) for d in generate_corpus(60, seed=2)), encoding="utf-8")
    finetune(FinetuneConfig(base=str(root / "bert-pretraining"), data=str(TOPICS), out_dir=str(runs / CLF), steps=3, threads=1))
    distill(DistillConfig(teacher=str(root / "gpt2"), corpus=str(corpus), out_dir=str(runs / STUDENT), steps=3,
                          layers=1, hidden=16, heads=2, threads=1))
    finetune(FinetuneConfig(base=str(root / "bert-mlm"), data=str(corpus), task="lm", out_dir=str(runs / LM), steps=3,
                            threads=1))
    for job_id, req in ((CLF, FinetuneRequest(base="demo/bert-pretraining", corpus=str(TOPICS), steps=3)),
                        (STUDENT, DistillRequest(teacher="demo/gpt2", corpus=str(corpus), steps=3)),
                        (LM, FinetuneRequest(base="demo/bert-mlm", corpus=str(corpus), task="lm", steps=3))):
        job = Job(id=job_id, session=OWNER, request=asdict(req), state="finished", queued_at=time.time(), total_steps=3)
        (runs / job_id / "job.json").write_text(json.dumps({k: v for k, v in job.to_json().items() if k != "place"}))
    mp = pytest.MonkeyPatch()
    mp.setenv("LMSCOPE_DEMO_MODELS", str(root))
    mp.setenv("LMSCOPE_RUNS", str(runs))
    from app import common

    common.listed_models.clear()
    yield runs
    common.listed_models.clear()
    mp.undo()


def page(**params) -> AppTest:
    at = AppTest.from_file(MAIN, default_timeout=120)
    at.session_state["train_owner"] = OWNER
    at.query_params.update(params)
    at.switch_page("views/finetune.py")
    return at.run()


def ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    return at


def titles(at: AppTest) -> list[str]:
    out = []
    for c in at.get("plotly_chart"):
        t = json.loads(c.proto.spec)["layout"].get("title")
        out.append((t or {}).get("text", "") if isinstance(t, dict) else str(t or ""))
    return out


def test_a_finished_classifier_shows_its_record_probabilities_and_head_shift(world):
    at = ok(page(model="demo/bert-pretraining", fttext="Bake the bread in a hot oven."))
    at.selectbox(key="ft_job").set_value(CLF).run()
    ok(at)
    assert any(f"runs/{CLF}" in s.value for s in at.success)
    table = at.dataframe[1].value
    assert "majority-class baseline" in list(table.iloc[:, 0])
    t = titles(at)
    assert any("confusion" in x for x in t) and any("How each head's attention changed" in x for x in t)
    assert any(x.startswith(f"runs/{CLF}:") for x in t)  # the typed text's label probabilities


def test_a_finished_distillation_shows_teacher_and_student_side_by_side(world):
    at = ok(page(model="demo/gpt2", ftmode="distill", fttext="the dogs near the"))
    at.selectbox(key="ft_job").set_value(STUDENT).run()
    ok(at)
    t = titles(at)
    assert any(x.startswith("teacher: demo/gpt2") for x in t) and any(x.startswith(f"student: runs/{STUDENT}") for x in t)
    assert any("top-1 agreement" in str(v) for v in at.dataframe[1].value.iloc[:, 0])


def test_a_finished_lm_finetune_shows_base_and_tuned_mask_distributions_and_head_shift(world):
    at = ok(page(model="demo/bert-mlm", ftmode="lm", fttext="the dogs near the [MASK] ."))
    at.selectbox(key="ft_job").set_value(LM).run()
    ok(at)
    assert any(f"runs/{LM}" in s.value for s in at.success)
    rows = list(at.dataframe[1].value.iloc[:, 0])
    assert "held-out perplexity before" in rows and "held-out perplexity after" in rows
    t = titles(at)
    assert any(x.startswith("base: demo/bert-mlm") for x in t) and any(x.startswith(f"fine-tuned: runs/{LM}") for x in t)
    assert any("How each head's attention changed" in x for x in t)


def test_typed_examples_with_one_label_are_refused_on_the_page(world):
    at = ok(page(model="demo/bert-pretraining", ftdata="typed"))
    at.text_area(key="ft_typed").set_value("sport: a goal\nsport: a match\nsport: a race\nsport: a win").run()
    ok(at)
    assert any("only one label" in e.value for e in at.error)
    assert at.button(key="ft_start").disabled


def test_finished_models_are_listed_on_the_models_page(world):
    at = AppTest.from_file(MAIN, default_timeout=120)
    at.switch_page("views/models.py")
    at.run()
    ok(at)
    listed = json.dumps([d.value.to_dict() for d in at.dataframe], default=str)
    assert f"runs/{CLF}" in listed and f"runs/{STUDENT}" in listed and f"runs/{LM}" in listed
