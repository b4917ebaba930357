"""Projector: batched hidden states equal each text's own forward pass (transformers, output_hidden_states),
and the PCA coordinates equal scikit-learn's on the same matrix."""
import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA

from model.inspect import InputError, encode
from model.load import load_model
from model.projector import project, token_states
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
    assert any("cut at 300 tokens" in w for w in st.warnings) and 300 <= len(x) < 340


@pytest.mark.slow  # umap-learn compiles its numba kernels on first use (tens of seconds)
def test_umap_is_seeded_and_finite():
    x = np.random.default_rng(0).normal(size=(200, 8)).astype(np.float32)
    u = project(x, "umap")
    assert u.shape == (200, 2) and np.isfinite(u).all()
    np.testing.assert_array_equal(u, project(x, "umap"))


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
