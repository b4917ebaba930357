"""Loading: discovery, refusal of pickles, clear errors for broken directories, one load per process."""
import json
import shutil
import threading

import pytest

from model import load as load_mod
from model.load import ModelLoadError, is_loaded, load_model
from model.registry import list_models


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_kernels_package_is_not_mistaken_for_hub_kernels():
    from transformers.utils import import_utils

    assert import_utils.is_kernels_available() is False


def test_hf_cache_and_demo_dirs_are_discovered(tiny_models, tmp_path, monkeypatch):
    hub = tmp_path / "hub"
    snap = hub / "models--openai-community--gpt2" / "snapshots" / "abc123"
    shutil.copytree(tiny_models["gpt2"], snap)
    (hub / "models--openai-community--gpt2" / "refs").mkdir()
    (hub / "models--openai-community--gpt2" / "refs" / "main").write_text("abc123")
    demo = tmp_path / "demo"
    _copy(tiny_models["bert-mlm"], demo / "bert")
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("LMSCOPE_DEMO_MODELS", str(demo))
    monkeypatch.setenv("LMSCOPE_RUNS", str(tmp_path / "runs"))
    names = {e.name: e for e in list_models()}
    assert names["openai-community/gpt2"].source == "hf-cache"
    assert names["demo/bert"].model_type == "bert"
    assert load_model("gpt2").info.task == "causal-lm"  # short name resolves to the cached repo
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    assert "openai-community/gpt2" in {e.name for e in list_models()}


def test_pickle_checkpoint_is_refused_with_conversion_hint(tiny_models, tmp_path):
    d = _copy(tiny_models["bert-mlm"], tmp_path / "m")
    (d / "model.safetensors").rename(d / "pytorch_model.bin")
    with pytest.raises(ModelLoadError, match="never unpickles.*save_pretrained"):
        load_model(d)


@pytest.mark.parametrize("cut", [4, 100, -10])
def test_truncated_safetensors(tiny_models, tmp_path, cut):
    d = _copy(tiny_models["bert-mlm"], tmp_path / "m")
    f = d / "model.safetensors"
    data = f.read_bytes()
    f.write_bytes(data[:cut])
    with pytest.raises(ModelLoadError, match="corrupt or truncated"):
        load_model(d)


def test_missing_config_unknown_type_and_bad_json(tiny_models, tmp_path):
    d = _copy(tiny_models["bert-mlm"], tmp_path / "m")
    (d / "config.json").unlink()
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_model(d)
    d2 = _copy(tiny_models["bert-mlm"], tmp_path / "m2")
    cfg = json.loads((d2 / "config.json").read_text())
    cfg["model_type"] = "llama-from-mars"
    (d2 / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match="unknown model_type 'llama-from-mars'"):
        load_model(d2)
    d3 = _copy(tiny_models["bert-mlm"], tmp_path / "m3")
    (d3 / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="not valid JSON"):
        load_model(d3)


def test_vocab_mismatch(tiny_models, tmp_path):
    d = _copy(tiny_models["bert-mlm"], tmp_path / "m")
    shutil.copy(tiny_models["gpt2"] / "tokenizer.json", d / "tokenizer.json")  # 300 tokens > 200 rows
    with pytest.raises(ModelLoadError, match="mismatch"):
        load_model(d)


def test_missing_tokenizer(tiny_models, tmp_path):
    d = _copy(tiny_models["gpt2"], tmp_path / "m")
    for f in d.glob("tokenizer*"):
        f.unlink()
    with pytest.raises(ModelLoadError):
        load_model(d)


def test_is_loaded_follows_the_process_cache(tiny_models, tmp_path):
    dest = _copy(tiny_models["gpt2"], tmp_path / "fresh")
    assert not is_loaded(dest)
    load_model(dest)
    assert is_loaded(dest)
    assert not is_loaded(tmp_path / "no-such-model")


def test_one_model_under_each_name_it_is_asked_by(tiny_models):
    """A listed name and the folder's path are one model in memory, each described by the name asked for."""
    from model.registry import ASSETS_MODELS

    by_name = load_model("demo/gpt2")
    by_path = load_model(ASSETS_MODELS / "gpt2")
    assert by_path.backend is by_name.backend and by_path.tokenizer is by_name.tokenizer  # loaded once
    assert (by_name.name, by_path.name) == ("demo/gpt2", "gpt2")
    assert by_name.info.unavailable["mlm"].startswith("masked-token predictions: demo/gpt2 (")
    assert by_path.info.unavailable["mlm"].startswith("masked-token predictions: gpt2 (")
    assert load_model("demo/gpt2") is by_name  # the name it was loaded by: the cached object itself


def test_failed_load_does_not_poison_the_cache(tiny_models, tmp_path):
    d = _copy(tiny_models["gpt2"], tmp_path / "m")
    good = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(good[:50])
    with pytest.raises(ModelLoadError):
        load_model(d)
    (d / "model.safetensors").write_bytes(good)
    assert load_model(d).info.task == "causal-lm"


def test_loaded_once_across_threads(tiny_models, tmp_path):
    d = _copy(tiny_models["bert-mlm"], tmp_path / "m")
    got = []
    threads = [threading.Thread(target=lambda: got.append(load_model(d))) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(m) for m in got}) == 1
    assert load_mod.LOAD_COUNT[(str(d.resolve()), "torch")] == 1


def test_no_trust_remote_code_anywhere():
    import pathlib

    root = pathlib.Path(load_mod.__file__).parent.parent
    for py in list((root / "model").rglob("*.py")) + list((root / "app").rglob("*.py")):
        assert "trust_remote_code=True" not in py.read_text(), py


def test_restricted_paths_cannot_escape_the_roots(tiny_models, tmp_path, monkeypatch):
    demo = tmp_path / "demo"
    _copy(tiny_models["gpt2"], demo / "gpt2")
    outside = _copy(tiny_models["bert-mlm"], tmp_path / "outside")
    (demo / "link").symlink_to(outside)
    monkeypatch.setenv("LMSCOPE_DEMO_MODELS", str(demo))
    monkeypatch.setenv("LMSCOPE_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert load_model(demo / "gpt2", restrict=True).info.task == "causal-lm"
    for bad in (demo / ".." / "outside", demo / "link", outside):
        with pytest.raises(ModelLoadError, match="outside the model folders"):
            load_model(bad, restrict=True)
    assert load_model(outside).info.task == "masked-lm"  # the CLI's own choice is not restricted


def test_cache_keeps_the_most_recently_used_models(tiny_models, tmp_path, monkeypatch):
    monkeypatch.setattr(load_mod, "MAX_LOADED", 2)
    a, b, c = (_copy(tiny_models["gpt2"], tmp_path / n) for n in "abc")
    ma = load_model(a)
    load_model(b)
    assert load_model(a) is ma  # a is now the most recent: loading c drops b
    load_model(c)
    assert load_model(a) is ma
    keys = [(str(p.resolve()), "torch") for p in (a, b, c)]
    assert keys[1] not in load_mod._CACHE and keys[2] in load_mod._CACHE
    load_model(b)  # a dropped model loads again (callers that still hold it keep a working copy)
    assert load_mod.LOAD_COUNT[keys[1]] == 2 and len(load_mod._CACHE) <= 2
