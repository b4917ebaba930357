"""Corpus search: exact nearest neighbours (against a full sort of every distance), the index kept on disk
and reused, its rows equal to the projector's states, bad queries refused."""
import json

import numpy as np
import pytest

from model.corpus_search import build_index, index_dir, query_vector, search
from model.inspect import InputError, encode
from model.load import load_model
from model.projector import token_states
from model.textsets import builtin


@pytest.fixture(scope="module")
def built(tiny_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("search")
    m = load_model(tiny_models["bert-mlm"])
    return m, build_index(m, builtin("english"), max_tokens=400, root=root), root


def _brute(x, q, metric, k, exclude=None):
    x, q = x.astype(np.float64), q.astype(np.float64)
    if metric == "cosine":
        d = -(x @ q) / (np.linalg.norm(x, axis=1) * np.linalg.norm(q))
    else:
        d = np.linalg.norm(x - q, axis=1)
    if exclude is not None:
        d[exclude] = np.inf
    return list(np.argsort(d, kind="stable")[:k])


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_exact_neighbours_equal_brute_force(built, metric):
    m, index, _ = built
    rng = np.random.default_rng(0)
    for layer in (0, 2):
        x = np.asarray(index.states(layer)[0])
        for row in rng.choice(len(x), 5, replace=False):
            hits = search(index, x[row], layer, k=12, metric=metric, exclude=int(row))
            assert [h.row for h in hits] == _brute(x, x[row], metric, 12, exclude=int(row))
            assert all(h.row != row for h in hits)
        q = rng.normal(size=x.shape[1]).astype(np.float32)  # a vector not in the index
        assert [h.row for h in search(index, q, layer, k=30, metric=metric)] == _brute(x, q, metric, 30)


def test_index_rows_equal_the_states_and_the_index_is_reused(built, tiny_models):
    m, index, root = built
    ts = token_states(m, builtin("english"), [0, 1, 2], max_tokens=400)
    np.testing.assert_array_equal(np.asarray(index.states(1)[0]), ts.layer(1))
    assert index.tokens == ts.tokens and len(index) == len(ts.tokens) == 400
    for row in (0, 17, len(index) - 1):  # each row's character span is its token's
        t = encode(m, index.texts[index.text_index[row]]).tokens[index.position[row]]
        assert (index.starts[row], index.ends[row]) == (t.start, t.end) and t.text == index.tokens[row]
    man = json.loads((index.path / "manifest.json").read_text())
    assert man["layers"] == [0, 1, 2] and man["count"] == len(ts.tokens)
    mtime = (index.path / "states-L1.npy").stat().st_mtime_ns
    again = build_index(m, builtin("english"), max_tokens=400, root=root)
    assert again.path == index.path and (again.path / "states-L1.npy").stat().st_mtime_ns == mtime
    assert index.path == index_dir(m, builtin("english"), 400, root) and not list(root.glob(".building-*"))


def test_query_from_a_text_finds_the_same_token_in_the_corpus(built):
    m, index, _ = built
    text = index.texts[3]
    row = int(np.flatnonzero(index.text_index == 3)[2])
    q = query_vector(m, text, int(index.position[row]), 2)
    top = search(index, q, 2, k=1, metric="cosine")[0]
    assert top.row == row and top.score > 0.9999 and "[" in top.context


def test_bad_queries(built):
    m, index, _ = built
    with pytest.raises(InputError, match="not in this index"):
        index.states(9)
    with pytest.raises(InputError, match="dimensions"):
        search(index, np.zeros(3), 1)
    with pytest.raises(InputError, match="metric"):
        search(index, np.zeros(32), 1, metric="dot")
    with pytest.raises(InputError, match="out of range"):
        query_vector(m, "the cat", 40, 1)
