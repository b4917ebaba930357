"""The real-English corpus reader (on a tiny fake WordNet / fortunes tree), its held-out split, the
probes, and the model notes (groups, vocabulary coverage, a longer reader)."""
from __future__ import annotations

import pytest

from model.train.corpus import CorpusError
from model.train.english import (APT_HINT, english_split, everyday_synsets, fortune_documents, gloss_sentences,
                                 normalize, segments, wordnet_documents)
from model.train.english_probes import CLOZE, PARAGRAPH, PROMPTS

HEADER = "  1 This software and database is being provided to you, the LICENSEE, by  \n"


def _synset(offset: int, lex: str, pos: str, lemma: str, gloss: str) -> str:
    return f"{offset:08d} {lex} {pos} 01 {lemma} 0 000 | {gloss}  \n"


@pytest.fixture
def wordnet(tmp_path):
    d = tmp_path / "wordnet"
    d.mkdir()
    noun = HEADER + "".join(_synset(100 + i, "15", "n", f"city_{i}", f"a city number {i}; \"we lived in city {i} once\"")
                            for i in range(10))
    noun += _synset(200, "05", "n", "dog", 'a member of the genus Canis; "the dog barked all night"')
    (d / "data.noun").write_text(noun)
    (d / "data.verb").write_text(HEADER + _synset(300, "29", "v", "run", "move fast by using one's feet"))
    (d / "data.adj").write_text(HEADER + _synset(400, "00", "s", "big(a)", 'above average in size; "a big house"'))
    (d / "data.adv").write_text(HEADER + _synset(500, "02", "r", "quickly", 'with speed; "she answered quickly"'))
    # index.<pos>: lemma pos synset_cnt p_cnt [ptrs] sense_cnt tagsense_cnt offsets; "dog" has no tagged sense
    (d / "index.noun").write_text(HEADER + "".join(f"city_{i} n 1 0 1 1 {100 + i:08d}  \n" for i in range(10))
                                  + "dog n 1 1 @ 1 0 00000200  \n")
    (d / "index.verb").write_text(HEADER + "run v 1 1 @ 1 1 00000300  \n")
    (d / "index.adj").write_text(HEADER + "big a 1 0 1 1 00000400  \n")
    (d / "index.adv").write_text(HEADER + "quickly r 1 0 1 1 00000500  \n")
    return d


@pytest.fixture
def fortunes(tmp_path):
    d = tmp_path / "fortunes"
    (d / "off").mkdir(parents=True)
    (d / "wisdom").write_text("A fool and his money are soon parted, as everyone knows.\n\t\t-- Proverb\n%\n"
                              "Look before you leap. Then leap anyway.\n%\n  __  \n /  \\ |__| ||| ___ \n%\n")
    (d / "wisdom.dat").write_bytes(b"\x00\x01binary index")
    (d / "ethnic").write_text("A joke about some group of people that we do not want to learn.\n%\n")
    (d / "off" / "rude").write_text("Something offensive that must never be read by the reader.\n%\n")
    return d


def test_gloss_sentences():
    assert gloss_sentences("n", "Paris", 'the capital and largest city of France; "she moved to Paris"') == \
        ["Paris is the capital and largest city of France.", "She moved to Paris."]
    assert gloss_sentences("n", "dog", "a member of the genus Canis") == ["A dog is a member of the genus Canis."]
    assert gloss_sentences("v", "run", "move fast") == ["To run is to move fast."]
    assert gloss_sentences("a", "big(a)", 'above average in size; "a big house"') == ["Big means above average in size.", "A big house."]


def test_wordnet_documents_group_synsets_of_one_file(wordnet):
    docs = wordnet_documents(wordnet, group=8, everyday=False)
    # 10 synsets of lexicographer file 15 -> 8 + 2; the dog (file 05), run, big, quickly: one each
    assert [len(d) for d in docs] == [16, 4, 2, 1, 2, 2]
    assert docs[0][:2] == ["A city 0 is a city number 0.", "We lived in city 0 once."]
    assert docs[3] == ["To run is to move fast by using one's feet."]
    assert not any("LICENSEE" in s for d in docs for s in d)


def test_everyday_keeps_only_the_tagged_senses(wordnet):
    assert everyday_synsets(wordnet) == {("n", f"{100 + i:08d}") for i in range(10)} | {
        ("v", "00000300"), ("a", "00000400"), ("r", "00000500")}
    docs = wordnet_documents(wordnet, group=8)  # everyday by default: the untagged dog synset is left out
    assert [len(d) for d in docs] == [16, 4, 1, 2, 2]
    assert not any("Canis" in s for d in docs for s in d)


def test_fortunes_skip_offensive_pictures_and_attributions(fortunes):
    docs = fortune_documents(fortunes)
    text = " ".join(s for d in docs for s in d)
    assert docs == [["A fool and his money are soon parted, as everyone knows."],
                    ["Look before you leap.", "Then leap anyway."]]
    assert "offensive" not in text and "joke" not in text and "Proverb" not in text


def test_missing_sources_name_the_apt_package(tmp_path):
    with pytest.raises(CorpusError, match="wordnet-base"):
        wordnet_documents(tmp_path / "nowhere")
    with pytest.raises(CorpusError, match="fortunes") as e:
        fortune_documents(tmp_path / "nowhere")
    assert APT_HINT in str(e.value)


def test_split_holds_documents_out_and_measures_zero_overlap(wordnet, fortunes):
    wn = wordnet_documents(wordnet, group=1, everyday=False)  # 14 one-synset documents
    shared = ["This sentence is in two documents."]
    sources = {"wordnet": wn, "fortunes": [[f"Fortune number {i}."] + shared for i in range(20)]}
    a = english_split(sources, share=0.2, seed=1)
    b = english_split(sources, share=0.2, seed=1)
    assert a.train == b.train and a.heldout == b.heldout  # seeded
    held = {normalize(s) for docs in a.heldout.values() for d in docs for s in d}
    train = {normalize(s) for d in a.train for s in d}
    assert a.heldout["fortunes"] and a.heldout["wordnet"]
    assert not held & train and a.stats["overlap_sentences"] == 0
    assert a.stats["heldout_sentences_removed_from_training"] > 0  # the shared sentence left training
    c = english_split(sources, probes=["fortune number 3"], share=0.2, seed=1)
    assert not any(s == "Fortune number 3." for d in c.train for s in d) and c.stats["probes_in_training_text"] == 0


def test_segments_keep_order_and_cover_every_sentence():
    doc = [f"Sentence {i} has five words." for i in range(30)]
    segs = segments([doc], max_words=20, seed=0)[0]
    assert " ".join(segs) == " ".join(doc)
    assert all(len(s.split()) <= 20 or s.count(".") == 1 for s in segs)
    assert len(segs) > 5


def test_probe_sets_are_big_enough_and_well_formed():
    assert len(CLOZE) >= 20 and len(PROMPTS) >= 20
    assert all(s.count("[MASK]") == 1 and accepted for s, accepted in CLOZE)
    assert all(accepted and "[MASK]" not in p for p, accepted in PROMPTS)
    assert len(PARAGRAPH.split()) > 100


def test_model_notes_groups_and_coverage():
    from model.model_notes import coverage, group_rank, note, vocabulary_message

    assert note("demo/en-gpt2").group == "real English" and note("demo/elmo").group == "toy world"
    assert sorted(["demo/bert", "x", "demo/en-bert"], key=group_rank) == ["demo/en-bert", "demo/bert", "x"]
    from model.train.tokenizer import train_tokenizer

    tok = train_tokenizer("bert", ["the dog runs .", "the cat sleeps ."] * 20, vocab_size=60)
    assert not coverage(tok, "the dog runs").mostly_outside
    c = coverage(tok, "The capital of France is Paris")
    assert c.mostly_outside and "capital" in c.outside
    msg = vocabulary_message("demo/bert", tok, ("mlm",), "The capital of France is Paris", ["demo/bert", "demo/en-bert"])
    assert "outside demo/bert's vocabulary" in msg and "use demo/en-bert" in msg
    assert vocabulary_message("demo/bert", tok, ("mlm",), "the dog runs", ["demo/en-bert"]) is None


def test_longer_reader_names_a_listed_model_of_the_same_kind(tmp_path):
    import json

    from model.model_notes import longer_reader
    from model.registry import ModelEntry

    def entry(name, arch, n):
        d = tmp_path / name.replace("/", "_")
        d.mkdir()
        (d / "config.json").write_text(json.dumps({"model_type": "bert", "max_position_embeddings": n}))
        return ModelEntry(name, str(d), "demo", "bert", arch, 0)

    entries = [entry("demo/bert", "BertForPreTraining", 48), entry("demo/gpt2", "GPT2LMHeadModel", 1024),
               entry("demo/en-bert", "BertForPreTraining", 320)]
    assert longer_reader("demo/bert", 100, ("mlm",), entries) == "demo/en-bert (320 tokens)"
    assert longer_reader("demo/bert", 400, ("mlm",), entries) is None  # the GPT-2 is not a masked LM


def test_probe_evidence_counts_sentences_pairing_the_key_word_with_an_answer():
    from model.train.english import EnglishSplit
    from model.train.english_eval import EVIDENCE_MIN, probe_evidence

    cows = ["Cows give milk."] * EVIDENCE_MIN  # "cows give us [MASK] ." -> milk
    honey = ["Honey is sweet.", "Bees made it."]  # key and answer never in one sentence
    q = probe_evidence(EnglishSplit(train=[cows, honey], heldout={}))
    by = {c["probe"]: c for c in q["cloze"]}
    assert by["cows give us [MASK] ."]["key"] == "cows"
    assert by["cows give us [MASK] ."]["with_answer"] == EVIDENCE_MIN
    assert by["honey is made by [MASK] ."]["with_answer"] == 0
    assert q["cloze_attested"] == 1 and q["prompts_attested"] == 1  # the prompt "Cows give us" too
