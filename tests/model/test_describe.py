"""model.describe (a model's description from its files, without torch) equals what `load_model` reports,
on every field the Models page shows, for the shipped demo models, a tiny model of every architecture, a
sharded checkpoint and ONNX exports; and importing and running it imports no torch."""
import inspect
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from model import capabilities
from model.describe import (
    ATTRIBUTE_MAPS,
    CONFIG_DEFAULTS,
    DEFAULT_MASK_TOKEN,
    ELMO_DEFAULTS,
    TOKENIZER_CLASS_BY_TYPE,
    DescribeError,
    describe,
    expected_parameters,
    mask_token,
)
from model.load import load_model
from model.registry import ASSETS_MODELS
from tiny_models import ARCHS

ROOT = Path(__file__).resolve().parents[2]
# What the Models page shows of a ModelInfo (and name/path, which it prints too)
FIELDS = ("name", "path", "architecture", "task", "model_type", "backend", "num_parameters", "size_bytes",
          "hidden_size", "num_layers", "num_heads", "vocab_size", "max_positions", "mask_token", "capabilities",
          "unavailable")
DEMOS = ("bert", "gpt2", "roberta", "albert", "elmo")


def _fields(info) -> dict:
    return {f: getattr(info, f) for f in FIELDS}


def assert_describes(ref) -> None:
    described = describe(ref)  # before the load: the model's files only
    assert _fields(described) == _fields(load_model(ref).info)


@pytest.mark.parametrize("name", DEMOS)
def test_describes_each_demo_model_as_its_load_does(name):
    path = ASSETS_MODELS / name
    if not (path / "config.json").is_file():
        pytest.skip(f"needs the demo model {path} (make demo-models)")
    # by its listed name, as the Models page asks: loads are cached per path under the first name asked
    # for, and other test modules load the demo models by name
    assert_describes(f"demo/{name}")


@pytest.mark.parametrize("arch", ARCHS)
def test_describes_a_tiny_model_of_each_architecture_as_its_load_does(tiny_models, arch):
    assert_describes(tiny_models[arch])


def test_describes_a_sharded_checkpoint(tiny_models, tmp_path):
    import transformers

    src = tiny_models["bert-pretraining"]
    dest = tmp_path / "sharded"
    model = transformers.BertForPreTraining.from_pretrained(src)
    model.save_pretrained(dest, max_shard_size="40KB")
    for f in src.iterdir():
        if f.name.startswith("tokenizer") or f.name == "special_tokens_map.json":
            shutil.copy(f, dest / f.name)
    assert (dest / "model.safetensors.index.json").is_file() and len(list(dest.glob("*.safetensors"))) > 1
    assert_describes(dest)


@pytest.fixture(scope="module")
def onnx_export(tiny_models, tmp_path_factory):
    """One lmscope ONNX export (BERT pre-training: LM head graph and an NSP output)."""
    from model.onnx.export import export_onnx

    return export_onnx(tiny_models["bert-pretraining"], tmp_path_factory.mktemp("onnx") / "bert" / "model.onnx").path


def test_describes_an_onnx_export_as_its_load_does(onnx_export):
    assert_describes(onnx_export)
    assert "lens" in describe(onnx_export).capabilities


def test_describes_an_onnx_export_without_its_head_graph(onnx_export, tmp_path):
    dest = tmp_path / "headless"
    shutil.copytree(onnx_export.parent, dest)
    (dest / "model.head.onnx").unlink()
    assert_describes(dest / "model.onnx")
    info = describe(dest / "model.onnx")
    assert "lens" not in info.capabilities and info.unavailable["lens"].startswith("the logit lens needs")
    assert info.warnings == load_model(dest / "model.onnx").info.warnings


def test_describes_a_gpt2_onnx_export_with_and_without_its_decoder_graph(tiny_models, tmp_path):
    from model.onnx.export import export_onnx

    path = export_onnx(tiny_models["gpt2"], tmp_path / "gpt2" / "model.onnx").path
    assert_describes(path)
    dest = tmp_path / "no-decoder"  # a path of its own: loads are cached per path
    shutil.copytree(path.parent, dest)
    (dest / "model.decoder.onnx").unlink()
    path = dest / "model.onnx"
    assert_describes(path)
    info = describe(path)
    assert any("model.decoder.onnx" in w for w in info.warnings)
    assert info.warnings == load_model(path).info.warnings


def test_an_onnx_graph_without_lmscope_metadata_is_left_to_the_load(onnx_export, tmp_path):
    dest = tmp_path / "foreign"
    shutil.copytree(onnx_export.parent, dest)
    (dest / "model.lmscope.json").unlink()
    with pytest.raises(DescribeError, match="no lmscope metadata"):
        describe(dest / "model.onnx")


def test_a_checkpoint_that_does_not_fit_its_architecture_is_left_to_the_load(tiny_models, tmp_path):
    """A BERT pre-training checkpoint read as BertForMaskedLM (as hub checkpoints often are): the pooler and
    NSP weights in the file are not parameters of the model, so the file's count is not the model's."""
    dest = tmp_path / "mlm-from-pretraining"
    shutil.copytree(tiny_models["bert-pretraining"], dest)
    cfg = json.loads((dest / "config.json").read_text())
    (dest / "config.json").write_text(json.dumps({**cfg, "architectures": ["BertForMaskedLM"]}))
    with pytest.raises(DescribeError, match="parameters"):
        describe(dest)
    assert load_model(dest).info.num_parameters == expected_parameters("BertForMaskedLM", cfg)


def test_a_model_missing_config_or_weights_is_left_to_the_load(tmp_path):
    with pytest.raises(DescribeError):
        describe(tmp_path / "nothing")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(DescribeError, match="safetensors"):
        describe(tmp_path)


# ---------------------------------------------------------------------------------------------------
# The mask token, as the tokenizer AutoTokenizer loads reports it


def _tokenizer_dir(tiny_models, tmp_path, arch: str, edit_config=None, special_tokens_map=None) -> Path:
    d = tmp_path / f"tok-{arch}"
    d.mkdir()
    for f in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny_models[arch] / f, d / f)
    tc = json.loads((d / "tokenizer_config.json").read_text())
    if edit_config:
        edit_config(tc)
    (d / "tokenizer_config.json").write_text(json.dumps(tc))
    if special_tokens_map is not None:
        (d / "special_tokens_map.json").write_text(json.dumps(special_tokens_map))
    return d


def _without(*keys):
    def edit(tc):
        for k in keys:
            tc.pop(k, None)
    return edit


def _set(**kw):
    return lambda tc: tc.update(kw)


@pytest.mark.parametrize("arch,edit,stm", [
    ("bert-mlm", None, None),
    ("bert-mlm", _without("mask_token"), None),  # generic class: no mask token
    ("bert-mlm", lambda tc: (tc.pop("mask_token"), tc.update(tokenizer_class="BertTokenizer")), None),  # class default
    ("bert-mlm", _without("mask_token", "tokenizer_class"), None),  # the model type's class (BertTokenizer)
    ("bert-mlm", _set(tokenizer_class="BertTokenizerFast"), None),
    ("bert-mlm", None, {"mask_token": "[SEP]"}),  # the legacy map wins over tokenizer_config.json
    ("bert-mlm", None, {"mask_token": {"content": "[CLS]", "lstrip": False}}),
    ("bert-mlm", _set(mask_token={"__type": "AddedToken", "content": "[UNK]"}), None),
    ("gpt2", None, None),
    ("gpt2", _without("tokenizer_class"), None),  # GPT2Tokenizer: none
    ("roberta-mlm", lambda tc: (tc.pop("mask_token"), tc.update(tokenizer_class="RobertaTokenizer")), None),
])
def test_mask_token_is_the_loaded_tokenizers(tiny_models, tmp_path, arch, edit, stm):
    from transformers import AutoTokenizer

    d = _tokenizer_dir(tiny_models, tmp_path, arch, edit, stm)
    cfg = json.loads((d / "config.json").read_text())
    assert mask_token(d, cfg["model_type"], cfg) == AutoTokenizer.from_pretrained(str(d), local_files_only=True).mask_token


def test_an_unknown_tokenizer_class_is_left_to_the_load(tiny_models, tmp_path):
    d = _tokenizer_dir(tiny_models, tmp_path, "bert-mlm", lambda tc: (tc.pop("mask_token"), tc.update(tokenizer_class="XLNetTokenizer")))
    with pytest.raises(DescribeError, match="XLNetTokenizer"):
        mask_token(d, "bert", {})


# ---------------------------------------------------------------------------------------------------
# The tables copied from transformers and the torch backend stay in step with them


def test_config_defaults_and_aliases_are_the_config_classes():
    import transformers

    classes = {"bert": transformers.BertConfig, "roberta": transformers.RobertaConfig, "albert": transformers.AlbertConfig,
               "distilbert": transformers.DistilBertConfig, "gpt2": transformers.GPT2Config}
    for mt, cls in classes.items():
        default = cls()
        assert {k: getattr(default, k) for k in CONFIG_DEFAULTS[mt]} == CONFIG_DEFAULTS[mt], mt
        assert default.tie_word_embeddings is True and default.num_labels == 2
        assert dict(getattr(cls, "attribute_map", {})) == ATTRIBUTE_MAPS.get(mt, {}), mt


def test_tokenizer_tables_are_transformers():
    import transformers
    from transformers.models.auto.tokenization_auto import TOKENIZER_MAPPING_NAMES

    for mt, cls in TOKENIZER_CLASS_BY_TYPE.items():
        assert TOKENIZER_MAPPING_NAMES[mt] == cls
    for cls, mask in DEFAULT_MASK_TOKEN.items():
        # the first __init__ up the class hierarchy that names mask_token (DistilBertTokenizer passes **kwargs on)
        params = (inspect.signature(k.__init__).parameters for k in getattr(transformers, cls).__mro__)
        param = next((p["mask_token"] for p in params if "mask_token" in p), None)
        assert (param.default if param is not None else None) == mask, cls


def test_elmo_defaults_are_elmo_config():
    import dataclasses

    from model.train.elmo import ElmoConfig

    fields = {f.name: f.default for f in dataclasses.fields(ElmoConfig)}
    assert {k: fields[k] for k in ELMO_DEFAULTS} == ELMO_DEFAULTS


def test_capability_tables_match_the_torch_backend():
    from model.backends import torch_backend as tb

    assert set(tb.MLM_HEADS) == capabilities.MLM_ARCHITECTURES
    assert set(tb.CAUSAL_HEADS) == capabilities.CAUSAL_ARCHITECTURES
    assert {a: kind for a, (kind, _) in tb.PAIR_HEADS.items()} == capabilities.PAIR_KINDS
    assert tb.SUPPORTED == set(capabilities.SUPPORTED) and set(capabilities.BASE_BY_TYPE.values()) == capabilities.BASE_MODELS


def _variants():
    small = dict(vocab_size=97, hidden_size=24, num_hidden_layers=3, num_attention_heads=4, intermediate_size=40,
                 max_position_embeddings=33)
    for tie in (True, False):
        yield from (("bert", a, dict(small, type_vocab_size=3, tie_word_embeddings=tie))
                    for a in ("BertModel", "BertForMaskedLM", "BertForPreTraining"))
        yield from (("roberta", a, dict(small, type_vocab_size=1, tie_word_embeddings=tie))
                    for a in ("RobertaModel", "RobertaForMaskedLM"))
        yield from (("albert", a, dict(small, embedding_size=8, num_hidden_groups=2, inner_group_num=2, tie_word_embeddings=tie,
                                       id2label={"0": "a", "1": "b", "2": "c"}))
                    for a in ("AlbertModel", "AlbertForMaskedLM", "AlbertForPreTraining"))
        yield from (("distilbert", a, dict(vocab_size=97, dim=24, n_layers=3, n_heads=4, hidden_dim=40, max_position_embeddings=33,
                                           tie_word_embeddings=tie, sinusoidal_pos_embds=tie))
                    for a in ("DistilBertModel", "DistilBertForMaskedLM"))
        yield from (("gpt2", a, dict(vocab_size=97, n_embd=24, n_layer=3, n_head=4, n_positions=33, n_inner=50 if tie else None,
                                     tie_word_embeddings=tie, bos_token_id=0, eos_token_id=0))
                    for a in ("GPT2Model", "GPT2LMHeadModel"))


@pytest.mark.parametrize("model_type,arch,config", list(_variants()), ids=lambda v: v if isinstance(v, str) else "")
def test_parameter_formula_counts_what_transformers_instantiates(model_type, arch, config):
    """Tied and untied heads, ALBERT groups, a 3-label SOP head; the config as written (only the keys given,
    the rest from the class defaults) and as transformers writes it in full."""
    import transformers

    model = getattr(transformers, arch)(transformers.AutoConfig.for_model(model_type, **config))
    real = sum(p.numel() for p in model.parameters())
    assert expected_parameters(arch, {**config, "model_type": model_type}) == real
    assert expected_parameters(arch, {**model.config.to_dict(), "model_type": model_type}) == real


# ---------------------------------------------------------------------------------------------------
# The Models page


def test_models_page_describes_unloaded_models_from_their_files_then_from_the_load(tiny_models, tmp_path, monkeypatch):
    """Both described models go through describe() (not loaded yet in this process), and the page ends
    showing the loaded descriptions (no "loading" caption left); once loaded, a rerun skips describe()."""
    from streamlit.testing.v1 import AppTest

    import model.describe
    from app import common

    demo = tmp_path / "demo"
    for arch, as_name in (("bert-pretraining", "described-bert"), ("gpt2", "described-gpt2")):
        shutil.copytree(tiny_models[arch], demo / as_name)
    monkeypatch.setenv("LMSCOPE_DEMO_MODELS", str(demo))
    monkeypatch.setenv("LMSCOPE_RUNS", str(tmp_path / "runs"))
    calls = []
    real = model.describe.describe
    monkeypatch.setattr(model.describe, "describe", lambda ref, restrict=False: calls.append(ref) or real(ref, restrict))
    common.listed_models.clear()
    try:
        at = AppTest.from_file(str(ROOT / "app" / "main.py"), default_timeout=60)
        at.query_params.update({"model": "demo/described-bert", "model2": "demo/described-gpt2"})
        at.switch_page("views/models.py")
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        assert calls == ["demo/described-bert", "demo/described-gpt2"]
        assert [e.value for e in at.subheader] == ["demo/described-bert", "demo/described-gpt2"]
        assert not any("loading the model" in c.value for c in at.caption)
        assert [m.value for m in at.metric if m.label == "Layers x heads"] == ["2 x 4", "2 x 4"]
        at.run()
        assert calls == ["demo/described-bert", "demo/described-gpt2"]  # both loaded now: no second description
        assert [e.value for e in at.subheader] == ["demo/described-bert", "demo/described-gpt2"]
    finally:
        common.listed_models.clear()


# ---------------------------------------------------------------------------------------------------
# No engine


def test_describing_imports_no_torch(tiny_models):
    """In a fresh process: import model.describe and describe models of every kind; torch, transformers,
    tokenizers and onnx stay unimported (the Models page runs this while the warm-up imports them). The
    safetensors headers are read with safetensors' safe_open, a small extension that imports numpy (which
    streamlit has imported before any page runs)."""
    refs = [str(tiny_models[a]) for a in ARCHS] + [str(ASSETS_MODELS / d) for d in DEMOS if (ASSETS_MODELS / d / "config.json").is_file()]
    code = ("import json, sys\n"
            "from model.describe import describe\n"
            f"infos = [describe(r) for r in {refs!r}]\n"
            "heavy = ('torch', 'transformers', 'tokenizers', 'onnx', 'onnxruntime')\n"
            "print(json.dumps([m for m in heavy if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
