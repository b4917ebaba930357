"""The toy world: deterministic, grammatical by its own tables, and probes that say the truth.

The checks parse the generated text back with the generator's word tables (not with its internals), so a
sentence whose verb disagrees with its subject, or an attractor whose number is invisible or mislabelled,
fails; attractors must come in both numbers (same as the subject and opposite), else "the opposite of the
nearest noun" would score 100%.
"""
import time

import pytest

from model.train import toyworld as tw

SING = {s: pair for pair in tw.ALL_NOUNS for s in pair[:1]}
PLUR = {p: pair for pair in tw.ALL_NOUNS for p in pair[1:]}
VERB_FORMS = {form: (pair, n) for pair in tw.VERBS_INTR + tw.VERBS_TR for n, form in enumerate(pair)}
PRONOUN_NUMBER = {"he": 0, "she": 0, "it": 0, "they": 1}


def noun_number(word):
    """0 singular, 1 plural, None when the form does not tell (sheep, deer) or it is not a noun."""
    if word in tw.AMBIGUOUS:
        return None
    return 0 if word in SING else 1 if word in PLUR else None


def expected_pronoun(word):
    if word in PRONOUN_NUMBER:
        return word
    if word in tw.NAMES_M:
        return "he"
    if word in tw.NAMES_F:
        return "she"
    if noun_number(word) == 1:
        return "they"
    pair = SING[word]
    return "he" if pair in tw.PEOPLE_M else "she" if pair in tw.PEOPLE_F else "it"


def read_np(words, i):
    """Parse "det (adj) noun" | name | pronoun at i. Returns (head word, its number, index after)."""
    w = words[i]
    if w in PRONOUN_NUMBER:
        return w, PRONOUN_NUMBER[w], i + 1
    if w in tw.NAMES_M or w in tw.NAMES_F:
        return w, 0, i + 1
    assert w in ("the", "a", "an", "some"), words
    j = i + 1 + (words[i + 1] in tw.ADJS)
    head = words[j]
    number = noun_number(head)
    if w in ("a", "an"):
        assert number == 0 and (w == "an") == (words[i + 1][0] in "aeiou"), words
    if w == "some":
        assert number == 1, words
    return head, number, j + 1


def parse(sentence):
    """-> dict(subject, number, attractor_number or None, verb, verb_index); asserts every agreement."""
    words = sentence.split()
    assert words[-1] == "."
    if words[:2] == ["in", "the"]:  # "in the garden there is a dog ."
        assert words[2] in tw.PLACES and words[3] == "there"
        head, number, end = read_np(words, 5)
        assert words[4] == ("is", "are")[number] and words[end] == ".", sentence
        return dict(subject=head, number=number, attractor=None, verb=words[4], verb_index=4, intro=True)
    head, number, i = read_np(words, 0)
    assert number is not None, sentence  # subjects always show their number
    attractor = None
    if words[i] in tw.PREPS:  # "the dog near the cats runs"
        a_head, attractor, i = read_np(words, i + 1)
    elif words[i] == "that":  # "the dog that sees the cats runs": the relative verb agrees too
        pair, n = VERB_FORMS[words[i + 1]]
        assert pair in tw.VERBS_TR and n == number, sentence
        a_head, attractor, i = read_np(words, i + 2)
    if words[i - 1] != head:  # something stood between subject and verb: it is an attractor
        assert attractor in (0, 1), sentence  # ...of a visible number
    pair, n = VERB_FORMS[words[i]]
    assert n == number, f"verb '{words[i]}' does not agree with '{head}': {sentence}"
    return dict(subject=head, number=number, attractor=attractor, verb=words[i], verb_index=i, intro=False)


DOCS = tw.generate_corpus(1500, seed=11)


def test_deterministic_per_seed():
    assert tw.generate_corpus(300, seed=11) == DOCS[:300]
    assert tw.generate_corpus(300, seed=12) != DOCS[:300]
    assert tw.agreement_probes(50, seed=9) == tw.agreement_probes(50, seed=9)
    assert tw.agreement_probes(50, seed=9) != tw.agreement_probes(50, seed=10)


def test_vocabulary_and_shape():
    vocab = tw.vocabulary()
    assert 200 <= len(vocab) <= 500
    used = {w for d in DOCS for s in d for w in s.split()}
    assert used <= vocab
    assert len(used) > 0.9 * len(vocab)  # the grammar really uses its vocabulary
    assert all(3 <= len(d) <= 8 for d in DOCS)
    assert {len(d) for d in DOCS} == set(range(3, 9))
    assert all(s.endswith(" .") and s == s.lower() for d in DOCS for s in d)


def test_agreement_is_always_right_in_generated_text():
    parsed = [[parse(s) for s in d] for d in DOCS]
    flat = [p for d in parsed for p in d if not p["intro"]]
    with_attractor = [p for p in flat if p["attractor"] is not None]
    assert len(with_attractor) > 0.2 * len(flat)  # attractors are common, not a corner case
    assert {p["number"] for p in with_attractor} == {0, 1}
    # both numbers of attractor, for both numbers of subject: no "opposite of the nearest noun" shortcut
    for number in (0, 1):
        same = [p["attractor"] == number for p in with_attractor if p["number"] == number]
        assert abs(sum(same) / len(same) - 0.5) < 0.06, (number, sum(same), len(same))


def test_documents_stay_on_topic_and_pronouns_refer_back():
    n_pronouns = 0
    for doc in DOCS:
        parsed = [parse(s) for s in doc]
        assert parsed[0]["intro"] and not any(p["intro"] for p in parsed[1:])  # one place, introduced once
        subjects = {p["subject"] for p in parsed if p["subject"] not in PRONOUN_NUMBER}
        assert len(subjects) <= 3  # a cast of two or three
        seen = {parsed[0]["subject"]}
        for prev, cur, sentence in zip(parsed, parsed[1:], doc[1:]):
            if cur["subject"] in PRONOUN_NUMBER:  # "he" / "it" / "they" = the previous sentence's subject
                assert cur["subject"] == expected_pronoun(prev["subject"]), (prev, sentence)
                n_pronouns += 1
            elif sentence.startswith("the "):  # definite only once the entity has been introduced
                assert cur["subject"] in seen, (doc, sentence)
            seen.add(cur["subject"])
    assert n_pronouns > 0.1 * sum(len(d) for d in DOCS)


@pytest.mark.parametrize("seed", [1, 4242])
def test_probes_are_right(seed):
    probes = tw.agreement_probes(2000, seed=seed)
    assert len(probes) == 2000
    for p in probes:
        words = p.sentence.split()
        info = parse(p.sentence)
        assert p.verb_index == info["verb_index"] and words[p.verb_index] == p.correct
        assert p.subject_index < p.verb_index and words[p.subject_index] == info["subject"]
        pair, number = VERB_FORMS[p.correct]
        assert number == noun_number(words[p.subject_index]) or words[p.subject_index] in tw.NAMES_M + tw.NAMES_F
        assert p.wrong == pair[1 - number]
        assert p.prefix == " ".join(words[: p.verb_index])
        assert p.masked == " ".join(words[: p.verb_index] + ["{mask}"] + words[p.verb_index + 1:])
        between = [noun_number(w) for w in words[p.subject_index + 1: p.verb_index]]
        if p.attractor:  # a noun of a visible number, labelled right, stands between subject and verb
            visible = [n for n in between if n is not None]
            assert visible == [info["attractor"]] and p.attractor_number == ("same" if visible[0] == number else "opposite")
            assert words[p.subject_index + 1] == "that" if p.attractor_kind == "relative" else words[p.subject_index + 1] in tw.PREPS
            assert p.kind == f"{p.attractor_number}/{p.attractor_kind}" and p.kind in tw.PROBE_KINDS
        else:
            assert all(n is None for n in between) and p.subject_index == p.verb_index - 1 and p.attractor_kind == ""
            assert p.attractor_number == "none" and p.kind == "none"
    share = sum(p.attractor for p in probes) / len(probes)
    assert abs(share - 0.7) < 0.04
    kinds = [p.attractor_kind for p in probes if p.attractor]
    assert abs(kinds.count("preposition") / len(kinds) - 0.6) < 0.05  # both kinds, as in the corpus
    numbers = [p.attractor_number for p in probes if p.attractor]
    assert abs(numbers.count("same") / len(numbers) - 0.5) < 0.05  # both numbers of attractor, half and half
    assert {p.kind for p in probes} == set(tw.PROBE_KINDS)


def test_probes_are_held_out():
    with pytest.raises(ValueError, match="training corpus seed"):
        tw.agreement_probes(10, seed=tw.TRAIN_SEED)
    with pytest.raises(ValueError, match="attractor_share"):
        tw.agreement_probes(10, seed=3, attractor_share=1.5)
    assert all(not p.attractor for p in tw.agreement_probes(200, seed=3, attractor_share=0.0))
    # exclude: sentences already seen (e.g. in training) are skipped, and n probes still come out
    seen = {p.sentence for p in tw.agreement_probes(100, seed=3)}
    fresh = tw.agreement_probes(100, seed=3, exclude=seen)
    assert len(fresh) == 100 and not seen & {p.sentence for p in fresh}


def test_a_few_megabytes_in_seconds():
    start = time.perf_counter()
    docs = tw.generate_corpus(20000, seed=0)
    elapsed = time.perf_counter() - start
    size = sum(len(s) + 1 for d in docs for s in d)
    assert size > 3_000_000 and elapsed < 300, (size, elapsed)  # a hang detector, not a speed target (~5 s idle)


def test_write_corpus(tmp_path):
    path = tw.write_corpus(tmp_path / "sub" / "toy.txt", 20, seed=3)
    blocks = path.read_text(encoding="utf-8").rstrip("\n").split("\n\n")
    assert [b.split("\n") for b in blocks] == tw.generate_corpus(20, seed=3)
    assert [p.name for p in path.parent.iterdir()] == ["toy.txt"]  # no temporary file left behind
    with pytest.raises(ValueError, match="n_documents"):
        tw.generate_corpus(-1, seed=0)
