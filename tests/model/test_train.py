"""End to end: every architecture trains, its loss falls, and the output loads with plain transformers
(ELMo with ours) and runs through its Backend; bad input fails early and cleanly."""
import json
import os
import signal

import pytest
import torch
import transformers as T

from model.train.config import TrainConfig, TrainingError
from model.train.corpus import CorpusError
from model.train.toyworld import generate_corpus
from model.train.trainer import train

AUTO = {"bert": T.AutoModelForPreTraining, "albert": T.AutoModelForPreTraining, "roberta": T.AutoModelForMaskedLM,
        "gpt2": T.AutoModelForCausalLM}


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("corpus") / "toy.txt"
    p.write_text("\n\n".join("\n".join(d) for d in generate_corpus(200, seed=21)), encoding="utf-8")
    return p


def tiny(arch, corpus, out, **kw):
    base = dict(arch=arch, out_dir=str(out), corpus=str(corpus), preset="tiny", vocab_size=300, steps=40,
                eval_every=20, checkpoint_every=20, eval_batches=2)
    return TrainConfig(**{**base, **kw})


def events(out):
    return [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("arch", ["bert", "roberta", "albert", "gpt2", "elmo"])
def test_trains_and_loads(arch, corpus_file, tmp_path):
    out = tmp_path / arch
    seen = []
    record = train(tiny(arch, corpus_file, out), callbacks=[seen.append])
    losses = [e["loss"] for e in seen if e["type"] == "step"]
    assert len(losses) == 40 and sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.5  # the loss falls
    assert record["status"] == "done" and record["steps"] == 40
    assert record["heldout"]["loss"] < record["baselines"]["unigram_loss"] + 1.0
    assert [e["type"] for e in events(out)] == [e["type"] for e in seen]  # the file holds what callbacks saw
    kinds = [e["type"] for e in seen]
    assert kinds[0] == "start" and kinds[-1] == "done" and kinds.count("eval") == 2 and kinds.count("checkpoint") == 2
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-0000020", "step-0000040"]
    saved = json.loads((out / "training_record.json").read_text())
    assert saved["corpus_fingerprint"] == record["corpus_fingerprint"] and saved["tokens_per_s"] > 0
    for key in ("unigram_loss", "most_frequent_accuracy"):
        assert key in saved["baselines"]

    tok = T.AutoTokenizer.from_pretrained(str(out)) if arch != "elmo" else None
    if arch == "elmo":
        from model.backends.elmo_backend import load_elmo

        backend, tok = load_elmo(out)
        ids = torch.tensor([tok("the dog near the cats runs .")["input_ids"]])
        fo = backend.forward(ids)
        assert fo.logits.shape == fo.backward_logits.shape == (1, ids.shape[1], backend.vocab_size)
        assert len(fo.hidden_states) == 3 and fo.attention is None and not backend.has_attention
        assert torch.allclose(backend.next_token_logits(ids), fo.logits[:, -1])
        return
    model = AUTO[arch].from_pretrained(str(out), attn_implementation="eager")  # plain transformers
    enc = tok("the dog near the cats runs .", return_tensors="pt")
    with torch.no_grad():
        o = model(**enc, output_attentions=True)
    assert len(o.attentions) == 2 and o.attentions[0].shape[-1] == enc["input_ids"].shape[1]
    from model.load import load_model  # and our loader / backend take it as it is

    loaded = load_model(out)
    fo = loaded.backend.forward(enc["input_ids"], enc["attention_mask"])
    assert fo.has_logits and len(fo.hidden_states) == 3


def test_character_input_elmo_trains_resumes_loads_and_generates(corpus_file, tmp_path):
    """`lmscope train elmo --char-cnn`: the spellings are stored with the weights, the loss falls, a resume
    with token input is refused, the output loads and generates like any causal model."""
    from model.generate import generate
    from model.inspect import inspect
    from model.load import load_model

    out = tmp_path / "elmo-chars"
    seen = []
    train(tiny("elmo", corpus_file, out, char_cnn=True, steps=20), callbacks=[seen.append])
    with pytest.raises(TrainingError, match="char_cnn"):
        train(tiny("elmo", corpus_file, out, steps=40, resume=True))  # the token-input model would not fit
    record = train(tiny("elmo", corpus_file, out, char_cnn=True, steps=40, resume=True), callbacks=[seen.append])
    losses = [e["loss"] for e in seen if e["type"] == "step"]
    assert record["steps"] == 40 and sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.5
    assert json.loads((out / "config.json").read_text())["char_cnn"] is True
    m = load_model(out)
    assert m.backend.module.embed is None and m.backend.module.char_ids.shape[0] == m.backend.vocab_size
    assert inspect(m, "the dog near the cats runs .").tokens
    a = generate(m, "the dog", strategy="beam", num_beams=3, max_new_tokens=8)
    plain = type(m.backend).decoder
    try:
        type(m.backend).decoder = lambda self, ids: None  # recompute the prefix instead
        b = generate(m, "the dog", strategy="beam", num_beams=3, max_new_tokens=8)
    finally:
        type(m.backend).decoder = plain
    assert a.tokens == b.tokens


@pytest.mark.parametrize("content,match", [
    (b"", "empty"),
    (b"\x00\x01\x02binary\x00" * 50, "binary"),
    (b"caf\xe9 au lait\n" * 50, "UTF-8"),
    (b"one short sentence .\n", "tokens|examples|needs"),
])
def test_bad_corpus_fails_before_writing(content, match, tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(content)
    out = tmp_path / "out"
    with pytest.raises(CorpusError, match=match):
        train(tiny("gpt2", bad, out))
    assert not out.exists()
    out.mkdir()
    (out / "notes.md").write_text("mine")
    with pytest.raises(CorpusError):
        train(tiny("bert", bad, out))
    assert [p.name for p in out.iterdir()] == ["notes.md"]


def test_nan_loss_stops_with_message_and_keeps_checkpoint(corpus_file, tmp_path):
    out = tmp_path / "nan"
    with pytest.raises(TrainingError, match=r"loss became (nan|inf).*learning rate too high.*step-0000001"):
        train(tiny("gpt2", corpus_file, out, lr=1e9, warmup=0, checkpoint_every=1, steps=20))
    assert (out / "checkpoints" / "step-0000001" / "model.safetensors").exists()
    assert not (out / "model.safetensors").exists()  # no final model from a diverged run
    assert events(out)[-1]["type"] == "error"


def test_stop_file_checkpoints_then_resume_finishes(corpus_file, tmp_path, monkeypatch):
    out = tmp_path / "stop"
    # The trainer looks for the file at most every 0.2 s (a stat per step costs at tiny sizes); here at every
    # step, so the request written during step 7's event is seen before step 8 (no sleep to outwait it).
    monkeypatch.setattr("model.train.loop.StopRequest.CHECK_EVERY_S", 0.0)

    def request_stop(e):
        if e["type"] == "step" and e["step"] == 7:
            (out / "STOP").write_text("")

    rec = train(tiny("gpt2", corpus_file, out, steps=20, checkpoint_every=100), callbacks=[request_stop])
    assert rec["status"] == "stopped" and rec["steps"] == 7
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step-0000007"]
    assert not (out / "model.safetensors").exists()
    with pytest.raises(TrainingError, match="--resume"):
        train(tiny("gpt2", corpus_file, out, steps=20))
    with pytest.raises(TrainingError, match="seed"):
        train(tiny("gpt2", corpus_file, out, steps=20, seed=5, resume=True))
    rec = train(tiny("gpt2", corpus_file, out, steps=20, checkpoint_every=100, resume=True))
    assert rec["status"] == "done" and rec["steps"] == 20 and (out / "model.safetensors").exists()
    steps = [e["step"] for e in events(out) if e["type"] == "step"]
    assert steps == list(range(1, 21))  # the event log reads as one run
    assert not (out / "STOP").exists()  # the old request was not held against the resumed run


def test_sigterm_checkpoints_and_stops(corpus_file, tmp_path):
    out = tmp_path / "term"

    def terminate(e):
        if e["type"] == "step" and e["step"] == 4:
            os.kill(os.getpid(), signal.SIGTERM)  # what `kill PID` or a job queue sends

    before = signal.getsignal(signal.SIGTERM)
    rec = train(tiny("elmo", corpus_file, out, steps=20, checkpoint_every=100), callbacks=[terminate])
    assert rec["status"] == "stopped" and rec["steps"] == 4
    assert (out / "checkpoints" / "step-0000004" / "trainer_state.pt").exists()
    assert events(out)[-1]["type"] == "stopped" and "--resume" in events(out)[-1]["message"]
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is put back


@pytest.mark.parametrize("kw,match", [
    (dict(arch="t5"), "unknown architecture"), (dict(preset="huge"), "unknown preset"),
    (dict(hidden=65), "divisible"), (dict(seq_len=4), "seq-len"), (dict(lr=float("nan")), "lr"),
    (dict(mlm_probability=1.5), "mlm-probability"), (dict(char_cnn=True), "ELMo option"),
    (dict(init_from="/nonexistent/model"), "not a trained model directory"),
])
def test_bad_settings(kw, match, corpus_file, tmp_path):
    with pytest.raises(ValueError, match=match):
        train(tiny(kw.pop("arch", "bert"), corpus_file, tmp_path / "o", **kw))
    assert not (tmp_path / "o").exists()


def test_init_from_continues_a_trained_model(corpus_file, tmp_path):
    """init_from starts from a trained model's weights and tokenizer (continued training on a corpus)."""
    from safetensors.torch import load_file

    first = tmp_path / "first"
    train(tiny("gpt2", corpus_file, first, steps=20))
    second = tmp_path / "second"
    record = train(tiny("gpt2", corpus_file, second, steps=2, lr=1e-9, warmup=0, init_from=str(first)))
    assert record["status"] == "done"
    assert (second / "tokenizer.json").read_text() == (first / "tokenizer.json").read_text()
    a, b = load_file(str(first / "model.safetensors")), load_file(str(second / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-4) for k in a)
    assert events(second)[1]["loss"] < events(first)[1]["loss"] - 0.5  # its first step is already trained
