"""Agreement probes per kind (model.probes), `lmscope agreement`, and the held-out bookkeeping of the demo
evaluation (model.train.demo): the shortcut a model can learn shows up as "opposite" right, "same" wrong."""
import json
import math

import pytest

from app.cli import main
from model.probes import GROUPS, ProbeScore, agreement, summarize
from model.train import toyworld as tw

NOUN_NUMBER = {w: n for pair in tw.ALL_NOUNS for n, w in enumerate(pair) if pair[0] not in tw.AMBIGUOUS}


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """Tiny random GPT-2 and BERT whose tokenizers know the toy world's words."""
    from tiny_models import build_toyworld

    root = tmp_path_factory.mktemp("toyworld_models")
    return {arch: str(build_toyworld(arch, root)) for arch in ("gpt2", "bert-mlm")}


def shortcut_prefers(p: tw.AgreementProbe) -> str:
    """The rule a model trained on toy world v2 could learn: the verb takes the opposite number of the
    noun just before it, or the subject's number when nothing stands in between."""
    words = p.prefix.split()
    if p.verb_index == p.subject_index + 1:
        number = NOUN_NUMBER.get(words[p.subject_index], 0)  # names are singular
    else:
        number = 1 - next(NOUN_NUMBER[w] for w in reversed(words) if w in NOUN_NUMBER)
    pair = next(v for v in tw.VERBS_INTR + tw.VERBS_TR if p.correct in v)
    return pair[number]


def test_the_shortcut_passes_opposite_and_fails_same():
    probes = tw.agreement_probes(600, seed=7)
    scored = []
    for p in probes:
        ok = shortcut_prefers(p) == p.correct
        scored.append(ProbeScore(p.sentence, p.kind, p.correct, p.wrong, float(ok), float(not ok), ok))
    r = summarize("shortcut", "causal", scored, n_examples=2)
    by = r.by_group()
    assert by["none"] == 1.0 and by["opposite"] == 1.0 and by["same"] == 0.0
    assert by["same/preposition"] == 0.0 and by["opposite/relative"] == 1.0
    c = dict(zip(r.groups, r.counts.tolist()))
    assert c["all"] == 600 == c["none"] + c["same"] + c["opposite"]
    assert c["same"] + c["opposite"] == c["preposition"] + c["relative"]
    assert c["same"] == c["same/preposition"] + c["same/relative"] and min(c.values()) > 20
    assert math.isclose(r.overall, (c["none"] + c["opposite"]) / 600)
    assert [e.kind for e in r.examples] == [k for k in tw.PROBE_KINDS for _ in range(2)]


@pytest.mark.parametrize("arch", ["gpt2", "bert-mlm"])
def test_agreement_on_a_model(toy, arch):
    from model.load import load_model

    r = agreement(load_model(toy[arch]), n=40, seed=11, n_examples=1)
    assert r.objective == ("causal" if arch == "gpt2" else "masked") and r.groups == GROUPS
    assert int(r.counts[0]) + r.skipped == 40 and r.counts[0] >= 30  # toy-world verbs are one token each
    assert all(0 <= a <= 1 for a, c in zip(r.accuracy, r.counts) if c) and all(math.isnan(a) for a, c in zip(r.accuracy, r.counts) if not c)
    assert r.examples and all(e.ok == (e.correct_score > e.wrong_score) and e.preferred in (e.correct, e.wrong)
                              for e in r.examples)
    assert all(e.correct_score <= 0 and e.wrong_score <= 0 for e in r.examples)  # log-probabilities
    json.dumps(r.to_json())


def test_agreement_refuses_bad_requests(toy, tiny_models):
    from model.load import load_model

    m = load_model(toy["gpt2"])
    with pytest.raises(ValueError, match="between 1 and"):
        agreement(m, n=0)
    with pytest.raises(ValueError, match="training corpus seed"):
        agreement(m, n=5, seed=tw.TRAIN_SEED)
    with pytest.raises(ValueError, match="masked or a causal LM head"):
        agreement(load_model(tiny_models["bert-encoder"]), n=5)


def test_cli_agreement(capsys, toy, tiny_models):
    code = main(["agreement", toy["gpt2"], "--n", "30", "--examples", "1", "--json"])
    out, _ = capsys.readouterr()
    assert code == 0
    d = json.loads(out)
    assert list(d["agreement"]) == list(GROUPS) and d["probes"]["all"] + d["skipped"] == 30
    assert d["objective"] == "causal" and d["seed"] == 4242
    assert {"sentence", "kind", "correct", "wrong", "correct_score", "wrong_score", "ok", "preferred"} <= set(d["examples"][0])
    code = main(["agreement", toy["bert-mlm"], "--n", "20"])
    out, _ = capsys.readouterr()
    assert code == 0 and "same/preposition" in out and "(masked)" in out
    for argv in (["agreement", toy["gpt2"], "--n", "0"], ["agreement", str(tiny_models["bert-encoder"]), "--n", "5"],
                 ["agreement", toy["gpt2"], "--seed", "0"]):
        code = main(argv)
        _, err = capsys.readouterr()
        assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, (argv, err)


def test_heldout_text_and_probes_avoid_training_sentences():
    from model.train.demo import heldout_docs

    train = frozenset(s for d in tw.generate_corpus(3000, seed=tw.TRAIN_SEED) for s in d)
    docs, flags, rec = heldout_docs(train, n=200)
    assert rec["eval_sentences"] == sum(len(d) for d in docs) and rec["eval_sentences_in_training"] == 0
    assert rec["eval_sentences_seen_in_training_before_dedupe"] > 0.2 * rec["eval_sentences"]  # the overlap is real
    assert rec["eval_sentences_scored"] == sum(map(sum, flags)) == rec["eval_sentences"] - rec["eval_sentences_seen_in_training_before_dedupe"]
    assert all((s in train) != keep for d, f in zip(docs, flags) for s, keep in zip(d, f))
    probes = tw.agreement_probes(300, seed=4242, exclude=train)
    assert len(probes) == 300 and not any(p.sentence in train for p in probes)


def test_quality_file_is_merged_not_overwritten(tmp_path):
    from model.train.demo import merge_quality

    f = tmp_path / "DEMO_QUALITY.json"
    f.write_text(json.dumps({"en-bert": {"masked_top1": 0.5}, "gpt2": {"agreement": 1.0}}))
    merged = merge_quality(f, {"gpt2": {"agreement": 0.97}})
    assert json.loads(f.read_text()) == merged == {"en-bert": {"masked_top1": 0.5}, "gpt2": {"agreement": 0.97}}
    assert [p.name for p in tmp_path.iterdir()] == ["DEMO_QUALITY.json"]
    f.write_text("[1, 2")
    with pytest.raises(ValueError, match="not valid JSON"):
        merge_quality(f, {"gpt2": {}})
    assert f.read_text() == "[1, 2"  # nothing destroyed
    assert merge_quality(tmp_path / "new.json", {"elmo": {"agreement": 1.0}}) == {"elmo": {"agreement": 1.0}}
