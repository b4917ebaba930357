"""model.onnx.export: the files an export writes (and only those, checked), its refusals, its report and the
CLI glue. The graphs' parity with transformers is in test_onnx_backend.py; other families in test_onnx_families.py."""
import argparse
import json
import os

import onnx
import pytest
import torch

import model.onnx.export as export_module
from model.backends.onnx_load import load_onnx
from model.load import load_model
from model.onnx.export import export_onnx
from model.onnx.parity import TOLERANCE
from tiny_models import ARCHS


@pytest.mark.parametrize("arch", ARCHS)
def test_export_writes_checked_files_only(exported, arch):
    r = exported[arch]
    d = r.path.parent
    expected = {"model.onnx", "model.lmscope.json", *r.tokenizer_files} | ({"model.head.onnx"} if arch != "bert-encoder" else set())
    expected |= {"model.decoder.onnx"} if arch == "gpt2" else set()  # generation with a key/value cache
    assert set(os.listdir(d)) == expected  # no temporary files left behind
    meta = json.loads(r.metadata_path.read_text())
    assert meta["lmscope_version"] == "0.1.0" and meta["format"] == "lmscope-onnx"
    assert (meta["num_layers"], meta["num_heads"]) == (2, 4)
    assert meta["onnx_bytes"] == r.path.stat().st_size
    graph = onnx.load(str(r.path))
    assert [o.name for o in graph.graph.output] == meta["outputs"] == list(r.outputs)
    assert "attentions" in r.outputs and "hidden_states" in r.outputs
    assert ("pair_logits" in r.outputs) == (arch.endswith("pretraining"))
    assert [i.name for i in graph.graph.input][:2] == ["input_ids", "attention_mask"]
    assert ("token_type_ids" in [i.name for i in graph.graph.input]) == arch.startswith(("bert", "albert"))
    assert r.parity and max(r.parity.values()) <= TOLERANCE
    assert meta["parity"]["max_error"] == r.parity
    assert (r.decoder_path is not None) == ("decoder" in r.parity) == (meta["decoder"] is not None) == (arch == "gpt2")
    if r.decoder_path is not None:
        assert meta["decoder"]["bytes"] == r.decoder_path.stat().st_size
        assert [i.name for i in onnx.load(str(r.decoder_path)).graph.input] == meta["decoder"]["inputs"]


def test_export_metadata_names_the_source_architecture(exported, tiny_models):
    for arch in ARCHS:
        cfg = json.loads((tiny_models[arch] / "config.json").read_text())
        meta = json.loads(exported[arch].metadata_path.read_text())
        assert meta["architecture"] == cfg["architectures"][0] and meta["model_type"] == cfg["model_type"]


def test_failed_export_leaves_no_file_and_keeps_the_old_one(tiny_models, tmp_path, monkeypatch):
    out = tmp_path / "m.onnx"
    export_onnx(tiny_models["gpt2"], out)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    monkeypatch.setattr(export_module, "TOLERANCE", -1.0)  # every parity check now fails
    with pytest.raises(ValueError, match="does not reproduce torch"):
        export_onnx(tiny_models["gpt2"], out)
    with pytest.raises(ValueError, match="does not reproduce torch"):
        export_onnx(tiny_models["bert-mlm"], tmp_path / "fresh" / "b.onnx")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before
    assert os.listdir(tmp_path / "fresh") == []


def test_interrupted_export_leaves_no_file(tiny_models, tmp_path, monkeypatch):
    def interrupt(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(export_module, "build_metadata", interrupt)  # after both graphs and the check, before renames
    with pytest.raises(KeyboardInterrupt):
        export_onnx(tiny_models["bert-mlm"], tmp_path / "m.onnx")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("bad, match", [
    (dict(out="m.txt"), "must end in .onnx"),
    (dict(opset=9), "opset must be between"),
    (dict(opset=True), "opset must be between"),
])
def test_export_refuses_bad_settings(tiny_models, tmp_path, bad, match):
    kw = dict(out="m.onnx", opset=17) | bad
    with pytest.raises(ValueError, match=match):
        export_onnx(tiny_models["gpt2"], tmp_path / kw.pop("out"), **kw)
    assert os.listdir(tmp_path) == []


def test_export_refuses_an_onnx_source_and_a_foreign_tokenizer_clash(exported, tiny_models, tmp_path):
    with pytest.raises(ValueError, match="already an ONNX model"):
        export_onnx(exported["gpt2"].path, tmp_path / "again.onnx")
    d = exported["gpt2"].path.parent
    with pytest.raises(ValueError, match="different tokenizer"):
        export_onnx(tiny_models["bert-mlm"], d / "other.onnx")  # would overwrite gpt2's tokenizer.json
    assert not (d / "other.onnx").exists()


def test_export_of_a_loaded_model_leaves_the_shared_model_untouched(tiny_models, tmp_path):
    shared = load_model(tiny_models["gpt2"])
    before = {k: v.clone() for k, v in shared.backend.model.state_dict().items()}
    r = export_onnx(shared, tmp_path / "g.onnx", fp16=True)  # fp16 rounds the weights of the exported copy
    assert r.architecture == "GPT2LMHeadModel" and r.fp16
    after = shared.backend.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert shared.backend.model.config._attn_implementation == "lmscope"


def test_cli_glue_with_another_opset(tiny_models, tmp_path, capsys):
    from app.cli.arguments import add_export_arguments
    from app.cli.tools import cmd_export_onnx as run_export

    p = argparse.ArgumentParser()
    add_export_arguments(p)
    out = tmp_path / "cli.onnx"
    assert run_export(p.parse_args([str(tiny_models["roberta-mlm"]), "--out", str(out), "--opset", "14", "--json"])) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["opset"] == 14 and report["path"] == str(out) and max(report["parity"].values()) <= TOLERANCE
    assert onnx.load(str(out)).opset_import[0].version == 14


def test_export_without_the_decoder_graph(tiny_models, tmp_path, capsys):
    from app.cli.arguments import add_export_arguments
    from app.cli.tools import cmd_export_onnx as run_export

    p = argparse.ArgumentParser()
    add_export_arguments(p)
    assert run_export(p.parse_args([str(tiny_models["gpt2"]), "--out", str(tmp_path / "m.onnx"), "--no-decoder"])) == 0
    assert "key/value cache" not in capsys.readouterr().out
    assert not (tmp_path / "m.decoder.onnx").exists()
    assert json.loads((tmp_path / "m.lmscope.json").read_text())["decoder"] is None
    m = load_onnx(tmp_path / "m.onnx", "nodecoder")
    assert not m.info.warnings and m.backend.decoder(torch.tensor([[5, 6]])) is None


def test_refusals_name_the_reason_in_one_line():
    from model.onnx.export import EXPORTABLE, REFUSED, refusal

    assert all(refusal(t) is None for t in EXPORTABLE)
    assert "ELMo" in refusal("lmscope-elmo") and "transformer architectures only" in refusal("lmscope-elmo")
    for t, why in REFUSED.items():
        assert why in refusal(t) and "\n" not in refusal(t)
    assert "bloom" in refusal("bloom") and "Llama" in refusal("bloom") and "torch backend" in refusal("bloom")
