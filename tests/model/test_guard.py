"""The load guard (model.guard): refusals before allocation, with both figures in one line."""
from __future__ import annotations

import json
import shutil

import pytest

from model import guard
from model.load import ModelLoadError, load_model


def _copy(src, dst, **changes):
    shutil.copytree(src, dst)
    cfg = json.loads((dst / "config.json").read_text())
    cfg.update(changes)
    (dst / "config.json").write_text(json.dumps(cfg))
    return dst


def test_more_layers_than_the_weights_hold_is_refused_from_meta_counts(tiny_models, tmp_path):
    """Same width, 4000 layers: stage 1 sees nothing wrong; the meta count (extrapolated from one- and
    two-layer builds) names both parameter counts."""
    d = _copy(tiny_models["bert-mlm"], tmp_path / "deep", num_hidden_layers=4000)
    with pytest.raises(ModelLoadError) as e:
        load_model(d)
    msg = str(e.value)
    assert "\n" not in msg and "describes a model of" in msg and "but its weights hold" in msg


def test_meta_count_equals_the_real_model(tiny_models):
    import transformers

    from model.families import choose_architecture

    for arch in ("bert-mlm", "gpt2", "albert-pretraining", "distilbert-mlm"):
        cfg = json.loads((tiny_models[arch] / "config.json").read_text())
        name, _, _ = choose_architecture(cfg["model_type"], cfg["architectures"])
        cls = getattr(transformers, name)
        config = cls.config_class.from_pretrained(str(tiny_models[arch]))
        real = sum(p.numel() for p in cls(config).parameters())
        assert guard.config_parameters(cls, config)[0] == real
        guard.EXTRAPOLATE_ABOVE, old = 0, guard.EXTRAPOLATE_ABOVE  # the extrapolation agrees too
        try:
            assert guard.config_parameters(cls, config)[0] == real
        finally:
            guard.EXTRAPOLATE_ABOVE = old


def test_too_large_for_free_memory_offers_bfloat16(tiny_models, tmp_path, monkeypatch):
    d = _copy(tiny_models["gpt2"], tmp_path / "g")
    params, _ = guard.file_tensors([d / "model.safetensors"])
    # room for the weights in bfloat16, not in float32
    monkeypatch.setattr(guard, "available_memory", lambda: guard.RESERVE_BYTES + params * 3)
    with pytest.raises(ModelLoadError) as e:
        load_model(d)
    msg = str(e.value)
    assert "free: refused before allocating" in msg and "--dtype bfloat16" in msg and "\n" not in msg
    m = load_model(d, dtype="bfloat16")
    assert any("bfloat16" in w for w in m.info.warnings)
    from model.generate import generate
    from model.inspect import inspect

    r = inspect(m, "the dogs near the cat", logit_lens=True)
    assert r.has_attention and r.logit_lens is not None
    assert len(generate(m, "the dogs", max_new_tokens=3).tokens) >= 1


def test_cli_dtype_flag(tiny_models, capsys):
    from app.cli import main

    assert main(["inspect", str(tiny_models["gpt2"]), "the dogs", "--dtype", "bfloat16", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["num_layers"] == 2
    assert main(["inspect", str(tiny_models["gpt2"]), "the dogs", "--dtype", "float8"]) == 2
