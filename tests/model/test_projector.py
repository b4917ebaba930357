"""Projector: batched hidden states equal each text's own forward pass (transformers, output_hidden_states),
and the PCA coordinates equal scikit-learn's on the same matrix."""
import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA

from model.inspect import InputError, encode
from model.load import load_model
from model.projector import MAX_TOKENS, project, token_states, umap_ready, warm_umap
from model.textsets import TextSetError, builtin, from_bytes, load


@pytest.mark.parametrize("arch", ["bert-mlm", "gpt2", "roberta-mlm"])
def test_batched_states_equal_each_texts_own_forward(tiny_models, arch):
    from transformers import AutoModel

    m = load_model(tiny_models[arch])
    ts = from_bytes("t.txt", b"a\tthe dogs near the cat run quickly.\nb\tthe cat\n\nb\thello world, this is lmscope!\n")
    st = token_states(m, ts, [0, 2], batch=3)
    ref = AutoModel.from_pretrained(tiny_models[arch], attn_implementation="eager").eval()
    rows = []
    for text in ts.texts:
        e = encode(m, text)
        with torch.no_grad():
            hs = ref(input_ids=torch.from_numpy(e.input_ids)[None], output_hidden_states=True).hidden_states
        keep = [not t.special for t in e.tokens]
        rows.append(np.stack([hs[0][0].numpy()[keep], hs[2][0].numpy()[keep]]))
    np.testing.assert_allclose(st.states, np.concatenate(rows, axis=1), atol=1e-4)
    assert st.labels[0] == "a" and st.labels[-1] == "b" and len(st.tokens) == st.states.shape[1]
    assert "[" in st.contexts[0] and st.text_index[-1] == 2


def test_pca_equals_sklearn_and_umap_shape(tiny_models):
    m = load_model(tiny_models["bert-mlm"])
    st = token_states(m, builtin("english"), [2], max_tokens=300)
    x = st.layer(2)
    np.testing.assert_allclose(project(x, "pca"), PCA(n_components=2, random_state=0).fit_transform(x), atol=1e-5)
    assert st.warnings[0].startswith("cut at 300 tokens") and len(x) == len(st.tokens) == 300
    last = st.text_index[-1]  # the last text read keeps only its first tokens (when the cut falls inside it)
    e = encode(m, st.texts[-1])
    kept = st.position[st.text_index == last]
    assert list(kept) == [p for p, t in enumerate(e.tokens) if not t.special][:len(kept)]
    assert [(t.start, t.end) for t in e.tokens if not t.special][:len(kept)] == \
        list(zip(st.starts[st.text_index == last], st.ends[st.text_index == last]))
    whole = token_states(m, builtin("english"), [2], max_tokens=MAX_TOKENS)
    assert not whole.warnings and len(whole.tokens) < MAX_TOKENS
    np.testing.assert_allclose(whole.layer(2)[:300], x, atol=1e-5)  # a cut changes no state


@pytest.mark.slow  # umap-learn compiles its numba kernels on first use (tens of seconds)
def test_umap_is_seeded_and_finite_after_the_warm_up():
    thread = warm_umap()
    assert warm_umap() is thread  # once per process
    thread.join()
    assert umap_ready()
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(size=(100, 8)) + 20 * c for c in np.eye(8)[:3]]).astype(np.float32)  # 3 blobs
    u = project(x, "umap")
    assert u.shape == (300, 2) and np.isfinite(u).all()
    np.testing.assert_array_equal(u, project(x, "umap"))
    blobs = u.reshape(3, 100, 2)
    centres = blobs.mean(axis=1)  # (3, 2)
    spread = max(float(np.linalg.norm(b - c, axis=1).max()) for b, c in zip(blobs, centres))
    gaps = [float(np.linalg.norm(centres[i] - centres[j])) for i, j in ((0, 1), (0, 2), (1, 2))]
    assert min(gaps) > 2 * spread  # the exact neighbours kept the blobs apart


def test_wordnet_set_labels_sentences_by_lexicographer_file(tmp_path, monkeypatch):
    from model.train import english

    d = tmp_path / "wordnet"
    d.mkdir()
    line = "{:08d} {} {} 01 {} 0 000 | {}  \n"
    (d / "data.noun").write_text(line.format(1, "05", "n", "dog", 'a domestic canine; "the dog barked all night"')
                                 + line.format(2, "13", "n", "bread", "food made from dough"))
    (d / "data.verb").write_text(line.format(3, "38", "v", "run", "move fast by using one's feet"))
    (d / "data.adj").write_text(line.format(4, "00", "s", "big(a)", "above average in size"))
    (d / "data.adv").write_text("")
    monkeypatch.setattr(english, "WORDNET_DIR", d)
    builtin.cache_clear()
    try:
        wn = builtin("wordnet")
        assert sorted(zip(wn.texts, wn.labels)) == [
            ("A dog is a domestic canine.", "noun.animal"), ("Big means above average in size.", "adj.all"),
            ("Bread is food made from dough.", "noun.food"), ("The dog barked all night.", "noun.animal"),
            ("To run is to move fast by using one's feet.", "verb.motion")]
        assert wn.label(0, "anything") == wn.labels[0]
        monkeypatch.setattr(english, "WORDNET_DIR", tmp_path / "nowhere")
        builtin.cache_clear()
        with pytest.raises(TextSetError, match="wordnet-base"):
            builtin("wordnet")
    finally:
        builtin.cache_clear()


def test_toyworld_labels_and_bad_inputs(tiny_models, tmp_path):
    tw = builtin("toyworld")
    assert tw.label(0, "dogs") == "animal" and tw.label(0, "runs") == "verb"
    m = load_model(tiny_models["gpt2"])
    with pytest.raises(InputError, match="out of range"):
        token_states(m, tw, [9])
    with pytest.raises(InputError, match="too few"):
        project(np.zeros((2, 4)), "pca")
    with pytest.raises(TextSetError, match="UTF-8"):
        from_bytes("x.txt", b"\xff\xfe\x00")
    with pytest.raises(TextSetError, match="no text"):
        from_bytes("x.txt", b"\n \n")
    with pytest.raises(TextSetError, match="cannot read"):
        load(str(tmp_path / "missing.txt"))
