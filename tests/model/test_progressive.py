"""One layer's attention from a forward pass stopped after that layer (`Backend.layer_attention`,
`model.progressive.inspect_layer`): the same maps as the whole forward's, for the seed families and the
families beyond them (grouped-query, sliding-window, local and relative-position attention), and the forward
really stops there. Also `inspect(predictions=False)`, which the Attention page calls after it."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from torch import nn

from model.backends.recording import RECORDER
from model.backends.torch_backend import TorchBackend
from model.errors import InputError, Unavailable
from model.inspect import encode, inspect
from model.load import load_model
from model.progressive import draws_sooner, inspect_layer
from tiny_families import build_family

DEMO = Path(__file__).resolve().parents[2] / "assets" / "models"
FAMILIES = ["llama", "qwen2", "mistral", "gpt-neo", "opt", "modernbert", "deberta-v2", "electra"]
EAGER = ("gpt-neo", "deberta-v2")  # attention outside transformers' AttentionInterface
SEEDS = ["gpt2", "bert-mlm", "roberta-mlm", "albert-pretraining", "distilbert-mlm"]
LONG = "the quick brown fox jumps over the lazy dog"  # past every tiny family's sliding / local window
SHORT = "hello world"


@pytest.fixture(scope="module")
def paths(tiny_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("progressive")
    out = {name: build_family(name, root) for name in FAMILIES}
    out.update({arch: tiny_models[arch] for arch in SEEDS})
    return out


def _ids(m, text=LONG):
    enc = encode(m, text)
    tti = None if enc.token_type_ids is None else torch.from_numpy(enc.token_type_ids)[None]
    return torch.from_numpy(enc.input_ids)[None], tti


def _layer_stack(backend) -> nn.ModuleList:
    return next(m for m in backend.model.base_model.modules() if isinstance(m, nn.ModuleList)
                and len(m) == backend.num_layers)


@pytest.mark.parametrize("name", FAMILIES + SEEDS)
def test_layer_attention_equals_the_whole_forwards_layer(name, paths):
    m = load_model(paths[name])
    # GPT-Neo's and DeBERTa's attention does not go through the recording hook: the whole (eager) forward runs
    assert m.backend.stops_early == (name not in EAGER)
    ids, tti = _ids(m)
    full = m.backend.forward(ids, None, tti, attentions=True, hidden_states=False).attention
    for layer in range(m.backend.num_layers):
        got = m.backend.layer_attention(ids, None, tti, layer=layer)
        torch.testing.assert_close(got(None), full[layer](None), atol=1e-6, rtol=0)
        torch.testing.assert_close(got([1]), full[layer]([1]), atol=1e-6, rtol=0)
    assert RECORDER.get() is None  # the stopped pass left no recording behind


@pytest.mark.parametrize("name", ["llama", "modernbert", "gpt2"])
def test_layer_attention_of_a_padded_batch(name, paths):
    m = load_model(paths[name])
    tok = transformers.AutoTokenizer.from_pretrained(str(paths[name]))
    tok.pad_token = tok.pad_token or tok.eos_token
    tok.padding_side = "right"
    enc = tok([LONG, SHORT], padding=True, return_tensors="pt", return_token_type_ids=False)
    ids, mask = enc["input_ids"], enc["attention_mask"]
    full = m.backend.forward(ids, mask, attentions=True, hidden_states=False).attention
    got = m.backend.layer_attention(ids, mask, layer=1)
    torch.testing.assert_close(got(None), full[1](None), atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", ["llama", "gpt2", "bert-mlm"])
def test_the_forward_stops_after_the_layer_asked_for(name, paths):
    m = load_model(paths[name])
    ids, tti = _ids(m)
    entered: list[int] = []
    hooks = [mod.register_forward_pre_hook(lambda mod, args, i=i: entered.append(i))
             for i, mod in enumerate(_layer_stack(m.backend))]
    try:
        m.backend.layer_attention(ids, None, tti, layer=0)
        assert entered == [0]  # layer 0 stopped inside its attention; layer 1 never ran
        entered.clear()
        m.backend.forward(ids, None, tti)
        assert entered == list(range(m.backend.num_layers))  # and a whole forward afterwards is whole
    finally:
        for h in hooks:
            h.remove()


def _assert_same_view(m, text):
    full = inspect(m, text, summaries=False)
    for layer in range(full.num_layers):
        first = inspect_layer(m, text, layer)
        assert first.tokens == full.tokens and first.warnings == full.warnings
        assert (first.num_layers, first.num_heads, first.layer) == (full.num_layers, full.num_heads, layer)
        for head in range(full.num_heads):
            a, b = first.attention(layer, head), full.attention(layer, head)
            assert a.dtype == b.dtype == np.float32 and a.shape == b.shape
            assert float(np.abs(a - b).max()) <= 1e-6, (layer, head)
        assert np.array_equal(first.attention_layer(layer), full.attention_layer(layer))


@pytest.mark.parametrize("name", ["llama", "qwen2", "gpt2", "bert-mlm"])
def test_inspect_layer_equals_inspect_on_tiny_models(name, paths):
    _assert_same_view(load_model(paths[name]), LONG + " [MASK] .")


@pytest.mark.parametrize("name,text", [("bert", "the dogs near the cat [MASK] ."), ("gpt2", "the girls near the horse run"),
                                       ("en-bert", "The capital of France is [MASK] . " * 12),
                                       ("en-gpt2", "The capital of France is Paris. " * 20)])
def test_inspect_layer_equals_inspect_on_demo_models(name, text):
    if not (DEMO / name / "config.json").is_file():
        pytest.skip(f"assets/models/{name} is absent (make demo-models)")
    _assert_same_view(load_model(DEMO / name), text)


def test_inspect_layer_refuses_what_inspect_refuses(paths):
    m = load_model(paths["llama"])
    first = inspect_layer(m, LONG, 1)
    with pytest.raises(InputError, match="only layer 1"):
        first.attention(0, 0)
    with pytest.raises(InputError, match="head 4 is out of range"):
        first.attention(1, 4)
    with pytest.raises(InputError, match="layer 2 is out of range"):
        inspect_layer(m, LONG, 2)
    with pytest.raises(InputError, match="empty"):
        inspect_layer(m, "  ", 0)


def test_inspect_layer_without_attention_is_unavailable():
    if not (DEMO / "elmo" / "config.json").is_file():
        pytest.skip("assets/models/elmo is absent (make demo-models)")
    m = load_model(DEMO / "elmo")
    assert not draws_sooner(m, 0)
    with pytest.raises(Unavailable):
        inspect_layer(m, "the cat", 0)


def test_an_eager_fallback_runs_the_whole_forward_and_is_not_drawn_first(paths):
    m = load_model(paths["gpt2"])
    model = transformers.GPT2LMHeadModel.from_pretrained(str(paths["gpt2"]), attn_implementation="eager").eval()
    eager = replace(m, backend=TorchBackend(model, "GPT2LMHeadModel", record_attention=False))
    assert not eager.backend.stops_early and not draws_sooner(eager, 0)
    text = LONG
    first, full = inspect_layer(eager, text, 1), inspect(m, text, summaries=False)
    np.testing.assert_allclose(first.attention(1, 2), full.attention(1, 2), atol=1e-5, rtol=0)


def test_draws_sooner_only_in_the_first_half(paths):
    m = load_model(paths["llama"])  # 2 layers
    assert draws_sooner(m, 0) and not draws_sooner(m, 1)


@pytest.mark.parametrize("arch", ["gpt2", "bert-mlm"])
def test_inspect_without_predictions_skips_the_lm_head_only(tiny_models, arch):
    m = load_model(tiny_models[arch])
    text = "the dogs near the cat [MASK] quickly."
    full, lean = inspect(m, text, summaries=False), inspect(m, text, summaries=False, predictions=False)
    assert lean.next_tokens is None and lean.next_ids is None and lean.surprisal is None and lean.masks == []
    assert (full.next_tokens is not None) if arch == "gpt2" else (len(full.masks) == 1)
    assert lean.tokens == full.tokens and np.array_equal(lean.hidden_norms, full.hidden_norms)
    assert np.array_equal(lean.attention(1, 0), full.attention(1, 0))
    if arch == "bert-mlm":  # pseudo-log-likelihood is asked for on its own
        pll = inspect(m, text, summaries=False, predictions=False, pll=True)
        assert pll.masks == [] and pll.surprisal_kind == "pll" and np.isfinite(pll.surprisal).any()
