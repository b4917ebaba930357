"""Neuron view: the feed-forward activations equal those of the transformers model's own activation modules,
and the factorization equals scikit-learn's NMF on the same matrix."""
import numpy as np
import pytest
import torch
from sklearn.decomposition import NMF

from model.inspect import InputError, encode
from model.load import load_model
from model.neurons import ffn_activations, neurons

TEXT = "the dogs near the cat run quickly ."


def _reference(path, arch, ids):
    """Each layer's activation-module output, hooked on an independently loaded model: (L, N, F)."""
    from transformers import AutoModel

    m = AutoModel.from_pretrained(path, attn_implementation="eager").eval()
    mods = [l.intermediate for l in m.encoder.layer] if arch.startswith("bert") else [b.mlp.act for b in m.h]
    out = []
    hs = [mod.register_forward_hook(lambda mod_, a, o: out.append(o[0].detach())) for mod in mods]
    with torch.no_grad():
        m(input_ids=torch.tensor([ids]))
    for h in hs:
        h.remove()
    return torch.stack(out).numpy()


@pytest.mark.parametrize("arch", ["bert-mlm", "gpt2"])
def test_activations_equal_the_models_own_and_nmf_equals_sklearn(tiny_models, arch):
    m = load_model(tiny_models[arch])
    enc = encode(m, TEXT)
    acts = ffn_activations(m, enc.input_ids, enc.token_type_ids)
    np.testing.assert_allclose(acts, _reference(tiny_models[arch], arch, enc.input_ids.tolist()), atol=1e-5)
    r = neurons(m, TEXT, k=3, layers=[1])
    np.testing.assert_array_equal(r.activations, acts[[1]])
    x = np.maximum(acts[1], 0)  # (N, F): one layer
    np.testing.assert_array_equal(r.matrix(), x)
    ref = NMF(n_components=3, init="nndsvda", random_state=0, max_iter=500)
    w = ref.fit_transform(x)
    np.testing.assert_allclose(r.factors, w, atol=1e-5)
    np.testing.assert_allclose(r.components, ref.components_, atol=1e-5)
    assert r.factors.shape == (len(r.tokens), 3) and 0 <= r.error < 1


def test_all_layers_side_by_side_and_albert_shared_layers(tiny_models):
    m = load_model(tiny_models["albert-pretraining"])
    r = neurons(m, TEXT, k=2)
    assert r.layers == (0, 1) and r.activations.shape[0] == 2
    assert not np.allclose(r.activations[0], r.activations[1])  # the shared block fires once per layer
    assert r.matrix().shape == (len(r.tokens), 2 * r.activations.shape[2])
    lay, neuron, weight = r.top_neurons(0, 1)[0]
    assert weight == r.components[0].max() and lay in (0, 1)


def test_bad_settings(tiny_models):
    m = load_model(tiny_models["gpt2"])
    with pytest.raises(InputError, match="out of range"):
        neurons(m, TEXT, layers=[5])
    with pytest.raises(InputError, match="k must be"):
        neurons(m, "the", k=3)


# family -> the module each layer's activation enters, as that family's modeling code names it
FFN_BY_FAMILY = {"llama": "mlp.down_proj", "qwen2": "mlp.down_proj", "phi3": "mlp.down_proj", "gemma": "mlp.down_proj",
                 "modernbert": "mlp.Wo", "opt": "fc2", "gpt-neo": "mlp.c_proj", "electra": "output.dense"}


@pytest.mark.parametrize("family", list(FFN_BY_FAMILY))
def test_other_families_activations_are_the_down_projections_input(family, tmp_path):
    """Beyond the seed table: the feed-forward block is found from the model's structure, and the activations
    equal what the family's own output projection receives on an independently loaded model."""
    from transformers import AutoModel

    from tiny_families import build_family

    path = build_family(family, tmp_path)
    m = load_model(path)
    enc = encode(m, TEXT)
    acts = ffn_activations(m, enc.input_ids, enc.token_type_ids)  # (L, N, F)
    ref = AutoModel.from_pretrained(path, attn_implementation="eager").eval()
    mods = [mod for name, mod in ref.named_modules() if name.endswith(FFN_BY_FAMILY[family]) and "attention" not in name]
    assert len(mods) == m.backend.num_layers
    got = []
    hs = [mod.register_forward_pre_hook(lambda mod_, a: got.append(a[0].reshape(-1, a[0].shape[-1]).detach()))
          for mod in mods]  # (N, F): batch 1 (OPT passes it flattened)
    with torch.no_grad():
        ref(input_ids=torch.tensor([enc.input_ids.tolist()]))
    for h in hs:
        h.remove()
    np.testing.assert_allclose(acts, torch.stack(got).numpy(), atol=1e-5)
    assert neurons(m, TEXT, k=2).factors.shape == (len(enc.tokens), 2)


def test_a_state_space_model_has_no_feed_forward_neurons(tmp_path):
    """Mamba's blocks hold no attention: the last linear layer of its mixer is no feed-forward block, and
    the view says so instead of factorizing something else."""
    from model.inspect import Unavailable
    from model.neurons import unavailable
    from tiny_families import build_state_space

    m = load_model(build_state_space(tmp_path))
    assert "no feed-forward block" in unavailable(m)
    with pytest.raises(Unavailable):
        neurons(m, TEXT, k=2)
