"""Fine-tuning (classification and LM) and distillation on tiny random models: the records, the saved
models loading in transformers' Auto classes, `lmscope classify` agreeing with them, freezing, exact
resume after a crash and after SIGKILL."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from app.cli import main
from model.train.distill import DistillConfig, distill
from model.train.finetune import FinetuneConfig, finetune
from model.train.labelled import builtin_task, split_heldout

ROOT = Path(__file__).resolve().parents[2]
TOPICS = ROOT / "assets" / "data" / "topics.csv"


@pytest.fixture(scope="module")
def lm_corpus(tmp_path_factory):
    from model.train.toyworld import generate_corpus

    p = tmp_path_factory.mktemp("corpus") / "toy.txt"
    p.write_text("\n\n".join("\n".join(d) for d in generate_corpus(120, seed=5)), encoding="utf-8")
    return p


def _cfg(base, out, **kw):
    return FinetuneConfig(base=str(base), data=str(kw.pop("data", TOPICS)), out_dir=str(out), threads=1, **kw)


def test_builtin_tasks_are_balanced_and_split_stratified():
    for name in ("toy-agreement", "toy-place"):
        d = builtin_task(name)
        counts = [d.labels.count(lab) for lab in d.labels_sorted]
        assert min(counts) > 0.15 * len(d.texts), (name, counts)
        tr, ho = split_heldout(d, 0.2, seed=0)
        assert not set(tr) & set(ho) and set(d.labels[i] for i in ho) == set(d.labels)


@pytest.mark.parametrize("arch", ["bert-pretraining", "gpt2", "roberta-mlm"])
def test_classifier_record_loads_in_transformers_and_classify_agrees(arch, tiny_models, tmp_path, capsys):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = tmp_path / "clf"
    rec = finetune(_cfg(tiny_models[arch], out, steps=6, batch_size=8))
    assert rec["status"] == "done" and rec["labels"] == ["cooking", "sport"]
    assert 0 <= rec["heldout"]["accuracy"] <= 1 and 0.4 < rec["majority_baseline"] < 0.6
    assert sum(map(sum, rec["heldout"]["confusion"])) == rec["heldout_examples"]
    saved = json.loads((out / "training_record.json").read_text())
    assert saved["heldout"]["accuracy"] == rec["heldout"]["accuracy"]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["id2label"] == {"0": "cooking", "1": "sport"} and cfg["architectures"][0].endswith("ForSequenceClassification")

    text = "Whisk the eggs and bake the cake."
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    tok = AutoTokenizer.from_pretrained(out)
    with torch.no_grad():
        want = torch.softmax(model(**tok(text, return_tensors="pt")).logits, -1)[0].tolist()
    capsys.readouterr()
    assert main(["classify", str(out), text, "--json"]) == 0
    got = json.loads(capsys.readouterr().out)["predictions"]
    assert [p["prob"] for p in got] == sorted((p["prob"] for p in got), reverse=True)
    for p in got:
        assert abs(p["prob"] - want[cfg["label2id"][p["label"]]]) < 1e-4


def test_head_only_and_freeze_layers_leave_the_frozen_weights_unchanged(tiny_models, tmp_path):
    base = load_file(str(tiny_models["bert-pretraining"] / "model.safetensors"))
    finetune(_cfg(tiny_models["bert-pretraining"], tmp_path / "head", steps=3, batch_size=8, head_only=True, lr=1e-2))
    head = load_file(str(tmp_path / "head" / "model.safetensors"))
    assert all(torch.equal(head[k], base[k]) for k in head if k.startswith("bert."))
    finetune(_cfg(tiny_models["bert-pretraining"], tmp_path / "k1", steps=3, batch_size=8, freeze_layers=1, lr=1e-2))
    k1 = load_file(str(tmp_path / "k1" / "model.safetensors"))
    frozen = [k for k in k1 if k.startswith(("bert.embeddings.", "bert.encoder.layer.0."))]
    moved = [k for k in k1 if k.startswith("bert.encoder.layer.1.") and k.endswith("weight")]
    assert frozen and all(torch.equal(k1[k], base[k]) for k in frozen)
    assert any(not torch.equal(k1[k], base[k]) for k in moved)


def test_lm_finetune_records_perplexity_before_and_after(tiny_models, tmp_path, lm_corpus):
    from transformers import AutoModelForMaskedLM

    rec = finetune(_cfg(tiny_models["bert-mlm"], tmp_path / "lm", task="lm", data=lm_corpus, steps=30, lr=3e-3))
    assert rec["objective"] == "masked LM"
    assert rec["heldout"]["perplexity"] < rec["heldout_before"]["perplexity"]
    AutoModelForMaskedLM.from_pretrained(tmp_path / "lm")


def test_distilled_student_is_smaller_and_loads(tiny_models, tmp_path, lm_corpus):
    from transformers import AutoModelForCausalLM

    rec = distill(DistillConfig(teacher=str(tiny_models["gpt2"]), corpus=str(lm_corpus), out_dir=str(tmp_path / "s"),
                                steps=4, layers=1, hidden=16, heads=2, threads=1))
    assert rec["student_parameters"] < rec["teacher_parameters"]
    assert 0 <= rec["heldout"]["agreement"] <= 1 and rec["speed"]["student_tokens_per_s"] > 0
    m = AutoModelForCausalLM.from_pretrained(tmp_path / "s")
    assert m.config.n_layer == 1 and m.config.n_embd == 16


def test_a_crash_then_resume_is_bit_identical(tiny_models, tmp_path):
    kw = dict(steps=8, batch_size=4, checkpoint_every=3, eval_every=4, seed=3)
    finetune(_cfg(tiny_models["bert-pretraining"], tmp_path / "ref", **kw))

    def crash(event):
        if event["type"] == "step" and event["step"] == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        finetune(_cfg(tiny_models["bert-pretraining"], tmp_path / "x", **kw), callbacks=[crash])
    assert not (tmp_path / "x" / "model.safetensors").exists()
    rec = finetune(_cfg(tiny_models["bert-pretraining"], tmp_path / "x", resume=True, **kw))
    assert rec["resumed_from"].endswith("step-0000003")
    assert (tmp_path / "x" / "model.safetensors").read_bytes() == (tmp_path / "ref" / "model.safetensors").read_bytes()


CHILD = """
import json, sys, time
from model.train.finetune import FinetuneConfig, finetune
from model.train.distill import DistillConfig, distill
def slow(event):  # time for the parent to kill us between checkpoints
    if event["type"] == "step":
        time.sleep(0.05)
kind, kw = sys.argv[1], json.loads(sys.argv[2])
(finetune(FinetuneConfig(**kw), [slow]) if kind == "finetune" else distill(DistillConfig(**kw), [slow]))
"""


def _steps(out: Path) -> int:
    try:
        return sum('"type": "step"' in ln for ln in (out / "events.jsonl").read_text().splitlines())
    except FileNotFoundError:
        return 0


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["finetune", "distill"])
def test_sigkill_then_resume_equals_an_uninterrupted_run(kind, tiny_models, tmp_path, lm_corpus):
    if kind == "finetune":
        kw = dict(base=str(tiny_models["gpt2"]), data=str(TOPICS), steps=12, batch_size=4, checkpoint_every=4, seed=1)
        run, make = finetune, FinetuneConfig
    else:
        kw = dict(teacher=str(tiny_models["gpt2"]), corpus=str(lm_corpus), steps=12, batch_size=4, checkpoint_every=4,
                  layers=1, hidden=16, heads=2, seed=1)
        run, make = distill, DistillConfig
    kw["threads"] = 1
    run(make(out_dir=str(tmp_path / "ref"), **kw))
    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    child = subprocess.Popen([sys.executable, "-c", CHILD, kind, json.dumps({**kw, "out_dir": str(out)})], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 600  # a loaded CI machine imports torch slowly
        while _steps(out) < 6:  # past the checkpoint at step 4, before the one at 8
            assert child.poll() is None, child.stderr.read().decode()[-2000:]
            assert time.time() < deadline, "the child never reached step 6"
            time.sleep(0.01)
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL and not (out / "model.safetensors").exists()
    rec = run(make(out_dir=str(out), resume=True, **kw))
    assert rec["status"] == "done" and rec["resumed_from"].endswith(("step-0000004", "step-0000008")), rec["resumed_from"]
    assert (out / "model.safetensors").read_bytes() == (tmp_path / "ref" / "model.safetensors").read_bytes()
    assert not list(out.rglob(".tmp*"))
    steps = [json.loads(ln)["step"] for ln in (out / "events.jsonl").read_text().splitlines()
             if json.loads(ln)["type"] == "step"]
    assert steps == list(range(1, 13))
