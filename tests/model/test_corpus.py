"""Corpus reading: both formats, every error a user can cause, and the two built-in corpora."""
import hashlib
import json

import pytest

from model.train import corpus as C
from model.train.corpus import Corpus, CorpusError, builtin_corpus, check_min_tokens, load_corpus, read_corpus
from model.train.toyworld import TRAIN_SEED, generate_corpus, write_corpus


def _write(tmp_path, name, data):
    p = tmp_path / name
    p.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return p


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_txt_documents_and_sentences(tmp_path, newline):
    text = newline.join(["\ufeffThe cat sat. It slept!", "A dog ran", "", "   ", "", "Second doc? Yes.", ""])
    p = _write(tmp_path, "notes.txt", text)
    c = read_corpus(p)
    assert c.documents == [["The cat sat.", "It slept!", "A dog ran"], ["Second doc?", "Yes."]]
    assert c.fingerprint == hashlib.sha256(p.read_bytes()).hexdigest()
    assert (c.name, c.num_documents, c.num_sentences, c.num_words) == ("notes.txt", 2, 5, 11)
    assert c.num_chars == sum(map(len, ["The cat sat.", "It slept!", "A dog ran", "Second doc?", "Yes."]))


def test_jsonl_documents(tmp_path):
    lines = [json.dumps({"text": "One. Two three.\nFour!", "id": 1}), "", json.dumps({"text": "Five, e.g. six."}),
             json.dumps({"text": "   "})]
    c = read_corpus(_write(tmp_path, "d.JSONL", "\n".join(lines)))
    assert c.documents == [["One.", "Two three.", "Four!"], ["Five, e.g. six."]]


def test_fingerprint_follows_the_bytes(tmp_path):
    a = read_corpus(_write(tmp_path, "a.txt", "Same words.\n"))
    b = read_corpus(_write(tmp_path, "b.txt", "Same words.\n\n"))
    assert a.documents == b.documents and a.fingerprint != b.fingerprint
    assert read_corpus(tmp_path / "a.txt").fingerprint == a.fingerprint


@pytest.mark.parametrize("name, data, match", [
    ("empty.txt", b"", "is empty"),
    ("blank.txt", b"  \n\n\t \r\n", "only whitespace"),
    ("latin1.txt", "caf\u00e9 ok".encode("utf-8") + b" na\xefve", r"not valid UTF-8: bad byte at offset 11"),
    ("nul.txt", b"hello" + b"\x00" * 3 + b"world", "binary file .*NUL"),
    ("late_nul.txt", b"x" * 100_000 + b"\x00", "binary file .*NUL"),
    ("control.txt", bytes(range(1, 9)) * 20, "binary file .*non-printable"),
    ("bad.jsonl", '{"text": "ok."}\n{"text": oops}\n', r"line 2 is not valid JSON"),
    ("list.jsonl", '{"text": "ok."}\n\n["text"]\n', r'line 3 must be a JSON object with a string "text"'),
    ("notext.jsonl", '{"body": "ok."}\n', r'line 1 must be a JSON object with a string "text"'),
    ("number.jsonl", '{"text": 3}\n', r'line 1 must be a JSON object'),
    ("nothing.jsonl", '{"text": ""}\n{"text": " "}\n', "has no sentences"),
])
def test_bad_files(tmp_path, name, data, match):
    with pytest.raises(CorpusError, match=match):
        read_corpus(_write(tmp_path, name, data))


def test_missing_directory_and_size_limit(tmp_path):
    with pytest.raises(CorpusError, match="corpus file not found"):
        read_corpus(tmp_path / "nope.txt")
    with pytest.raises(CorpusError, match="is a directory"):
        read_corpus(tmp_path)
    p = _write(tmp_path, "big.txt", "word. " * 100)
    with pytest.raises(CorpusError, match="is 600 bytes; the corpus size limit is 500 bytes"):
        read_corpus(p, max_bytes=500)
    assert read_corpus(p, max_bytes=600).num_sentences == 100
    assert C.MAX_BYTES == 200 * 2**20
    assert issubclass(CorpusError, ValueError)  # the CLI turns it into "error: ..." and exit code 2


def test_check_min_tokens():
    check_min_tokens(64, 64, "x")
    with pytest.raises(CorpusError, match="corpus x has 63 tokens; training needs at least 64"):
        check_min_tokens(63, 64, "x")
    c = Corpus("tiny.txt", [["one two three."]], "0" * 64)
    check_min_tokens(c, 3)
    with pytest.raises(CorpusError, match="corpus tiny.txt has 3 words; training needs at least 4"):
        check_min_tokens(c, 4)


def test_toyworld_file_round_trip(tmp_path):
    p = write_corpus(tmp_path / "toy.txt", 50, seed=7)
    assert read_corpus(p).documents == generate_corpus(50, seed=7)


def test_builtin_toyworld_is_generated_once_then_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("LMSCOPE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(C, "TOYWORLD_DOCS", 200)  # the real one is 30k documents; the mechanism is the same
    c = builtin_corpus("toyworld")
    assert c.name == "toyworld" and c.documents == generate_corpus(200, TRAIN_SEED)
    (cached,) = (tmp_path / "cache").iterdir()
    assert cached.name.startswith("toyworld-v") and c.fingerprint == hashlib.sha256(cached.read_bytes()).hexdigest()

    def no_regeneration(*a, **k):
        raise AssertionError("regenerated although cached")

    monkeypatch.setattr("model.train.toyworld.write_corpus", no_regeneration)
    again = load_corpus("toyworld")
    assert again.documents == c.documents and again.fingerprint == c.fingerprint


def test_builtin_toyworld_unwritable_cache(tmp_path, monkeypatch):
    blocker = _write(tmp_path, "file", "not a directory")
    monkeypatch.setenv("LMSCOPE_CACHE", str(blocker / "sub"))
    monkeypatch.setattr(C, "TOYWORLD_DOCS", 5)
    with pytest.raises(CorpusError, match="set LMSCOPE_CACHE to a writable directory"):
        builtin_corpus("toyworld")


def test_builtin_pydoc_is_real_prose():
    c = builtin_corpus("pydoc")
    assert c.name == "pydoc" and c.num_documents > 50 and c.num_words > 20_000
    assert builtin_corpus("pydoc").fingerprint == c.fingerprint
    sentences = [s for d in c.documents for s in d]
    for s in sentences:  # no headings, underlines, tables, grammar rules or footnote marks survived
        assert not any(mark in s for mark in ("***", "===", "+---", "::=", "-[ ")), s
        assert not s.startswith(("[", "|", "+")) and "\n" not in s
    assert any(s.startswith('The "if" statement is used for conditional execution') for s in sentences)
    assert sum(len(d) >= 2 for d in c.documents) > 0.9 * c.num_documents  # one topic per document: pairs exist


def test_unknown_builtin_and_dispatch(tmp_path):
    with pytest.raises(CorpusError, match="unknown built-in corpus 'wiki'"):
        builtin_corpus("wiki")
    p = _write(tmp_path, "mine.txt", "Hello there.\n")
    assert load_corpus(p).documents == [["Hello there."]] and load_corpus(str(p)).name == "mine.txt"
