"""model.modelinfo: ModelInfo, LoadedModel and model_info take keywords only (adding a field never
shifts the meaning of another)."""
from types import SimpleNamespace

import pytest

from model.modelinfo import LoadedModel, ModelInfo, model_info

FIELDS = dict(name="m", path="/m", backend="torch", model_type="gpt2", architecture="GPT2LMHeadModel",
              task="causal-lm", num_layers=2, num_heads=4, hidden_size=32, vocab_size=300, max_positions=64,
              num_parameters=1000, size_bytes=4000, capabilities=("attention", "causal"))


def test_model_info_takes_keywords_only():
    info = ModelInfo(**FIELDS)
    assert info.unavailable == {} and info.warnings == () and info.to_json()["vocab_size"] == 300
    with pytest.raises(TypeError):
        ModelInfo(*FIELDS.values())
    with pytest.raises(TypeError):
        LoadedModel(info, None, None)
    assert LoadedModel(info=info, backend=None, tokenizer=None).name == "m"


def test_model_info_from_a_backend_and_a_tokenizer():
    backend = SimpleNamespace(num_layers=2, num_heads=4, vocab_size=300, max_positions=64)
    kw = dict(name="m", path="/m", backend_kind="torch", model_type="gpt2", architecture="GPT2LMHeadModel",
              task="causal-lm", backend=backend, hidden_size=32, num_parameters=1000, size_bytes=4000,
              capabilities={"causal", "attention"}, tokenizer=SimpleNamespace(mask_token=None), warnings=["w"])
    info = model_info(**kw)
    assert info.capabilities == ("attention", "causal") and info.warnings == ("w",) and info.max_positions == 64
    assert "mlm" in info.unavailable and "attention" not in info.unavailable
    with pytest.raises(TypeError):
        model_info(*kw.values())
