"""ONNX export (model.onnx.export) of the families beyond the seed six, served by the onnxruntime backend: the
tiny random checkpoints of tests/tiny_families.py that export (the Llama-family decoders with their generation
graph, and a modern encoder) against transformers itself, as tests/model/test_families.py does for the torch
backend: attention maps within 1e-4 of the eager maps (one text past the sliding window, and a right-padded
batch), logits, greedy generation equal to `generate()` through FILE.decoder.onnx, fill-mask top-k, the logit
lens. The families that do not export are refused with one line naming why, and nothing is written.
"""
from __future__ import annotations

import json

import pytest
import torch
import transformers

from model.generate import generate
from model.inspect import inspect, max_tokens
from model.load import load_model
from model.onnx.export import EXPORTABLE, export_onnx, refusal
from model.onnx.parity import TOLERANCE
from tiny_families import FAMILIES, WINDOW, assert_masks_match, build_family

NAMES = [n for n, f in FAMILIES.items() if f[0] in EXPORTABLE]
CAUSAL = [n for n in NAMES if FAMILIES[n][1] == "causal"]
MASKED = [n for n in NAMES if FAMILIES[n][1] == "masked"]
LONG = "the quick brown fox jumps over the lazy dog"  # past every WINDOW, within 60 positions
SHORT = "hello world"
TOL = 1e-4


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """name -> (source folder, ExportReport) for every family that exports."""
    root = tmp_path_factory.mktemp("onnx_families")
    out = {}
    for name in NAMES:
        src = build_family(name, root / "src")
        out[name] = (src, export_onnx(src, root / "onnx" / name / "model.onnx"))
    return out


def _models(exports, name):
    """(the ONNX export loaded, the source loaded on the torch backend, transformers' eager model)."""
    src, report = exports[name]
    om, tm = load_model(report.path), load_model(src)
    ref = getattr(transformers, tm.info.architecture).from_pretrained(str(src), attn_implementation="eager").eval()
    return om, tm, ref


def test_every_family_exports():
    assert NAMES == list(FAMILIES)


@pytest.mark.parametrize("name", NAMES)
def test_export_is_checked_and_complete(exports, name):
    _, r = exports[name]
    assert max(r.parity.values()) <= TOLERANCE, r.parity
    assert "attentions" in r.outputs and r.head_path is not None
    assert (r.decoder_path is not None) == ("decoder" in r.parity) == (name in CAUSAL)
    meta = json.loads(r.metadata_path.read_text())
    assert meta["model_type"] == FAMILIES[name][0] and meta["num_heads"] == 4
    assert meta["num_kv_heads"] == FAMILIES[name][3].get("num_key_value_heads", 4)


@pytest.mark.parametrize("name", NAMES)
def test_attention_maps_and_logits_equal_transformers(exports, name):
    om, _, ref = _models(exports, name)
    assert om.info.backend == "onnx" and "attention" in om.info.capabilities
    tok = om.tokenizer
    if tok.pad_token is None:
        tok = transformers.AutoTokenizer.from_pretrained(str(exports[name][1].path.parent))
        tok.pad_token = tok.eos_token
    tok.padding_side = "right"
    for texts in ([LONG], [LONG, SHORT]):
        enc = tok(texts, padding=True, return_tensors="pt", return_token_type_ids=False)
        ids, mask = enc["input_ids"], enc["attention_mask"]
        assert WINDOW + 2 < ids.shape[1] <= 60
        with torch.inference_mode():
            want = ref(input_ids=ids, attention_mask=mask, output_attentions=True)
        got = om.backend.forward(ids, mask)
        assert len(got.attention) == len(want.attentions) == om.backend.num_layers
        logits = got.logits_at(torch.arange(ids.shape[1]))
        for b, n in enumerate(mask.sum(1).tolist()):  # the real tokens' rows
            for g, w in zip(got.attention, want.attentions):
                torch.testing.assert_close(g()[b, :, :n, :n], w[b, :, :n, :n], atol=TOL, rtol=0)
            torch.testing.assert_close(logits[b, :n], want.logits[b, :n], atol=TOL, rtol=0)


@pytest.mark.parametrize("name", CAUSAL)
def test_greedy_generation_equals_transformers_through_the_decoder_graph(exports, name):
    om, tm, ref = _models(exports, name)
    prompt = "the quick brown"
    ids = torch.tensor([om.tokenizer(prompt)["input_ids"]])
    dec = om.backend.decoder(ids)
    assert dec is not None  # FILE.decoder.onnx, not recomputing the prefix
    with torch.inference_mode():
        want = ref.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=8, do_sample=False,
                            pad_token_id=om.tokenizer.eos_token_id)[0, ids.shape[1]:].tolist()
    got = generate(om, prompt, strategy="greedy", max_new_tokens=8)
    assert [t for _, t in got.tokens] == want[: len(got.tokens)] and got.tokens
    assert got.tokens == generate(tm, prompt, strategy="greedy", max_new_tokens=8).tokens
    seq = ids
    for t in want[:WINDOW + 2]:  # the cache's logits equal recomputing, past the sliding window
        torch.testing.assert_close(dec.logits(), om.backend.next_token_logits(seq), atol=TOL, rtol=0)
        dec.append(torch.tensor([t]))
        seq = torch.cat([seq, torch.tensor([[t]])], 1)


@pytest.mark.parametrize("name", MASKED)
def test_fill_mask_topk_equals_model_logits(exports, name):
    om, _, ref = _models(exports, name)
    r = inspect(om, f"the quick brown {om.tokenizer.mask_token} jumps over the lazy dog", top_k=5, summaries=False)
    with torch.inference_mode():
        logits = ref(input_ids=torch.tensor([[t.id for t in r.tokens]])).logits[0]
    assert_masks_match(r, logits, 5, TOL)


@pytest.mark.parametrize("name", NAMES)
def test_logit_lens_and_info_equal_the_torch_backend(exports, name):
    om, tm, _ = _models(exports, name)
    for field in ("capabilities", "task", "model_type", "architecture", "num_layers", "num_heads", "hidden_size",
                  "vocab_size", "max_positions", "num_parameters", "mask_token"):
        assert getattr(om.info, field) == getattr(tm.info, field), field
    assert om.backend.num_kv_heads == tm.backend.num_kv_heads and max_tokens(om) == max_tokens(tm)
    r = inspect(om, " ".join([LONG] * 10), summaries=False)  # past the last position: truncated, as on torch
    assert len(r.tokens) == max_tokens(tm) and any("truncated" in w for w in r.warnings)
    ids = torch.tensor([tm.tokenizer(LONG)["input_ids"]])
    hs = tm.backend.forward(ids, attentions=False).hidden_states
    for layer, h in enumerate(hs):  # the final norm on intermediate layers only
        torch.testing.assert_close(om.backend.lens(h, layer), tm.backend.lens(h, layer), atol=TOL, rtol=0)


def test_the_cli_inspects_and_generates_with_an_export(exports, capsys):
    from app.cli import main

    path = str(exports["llama"][1].path)
    assert main(["generate", path, "the quick brown", "--max-new-tokens", "4", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["tokens"]) == 4
    assert main(["inspect", path, LONG, "--json", "--layer", "1", "--head", "3"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["num_layers"] == 2 and len(out["tokens"]) > WINDOW


def test_a_family_without_attention_is_refused_with_its_reason(tmp_path):
    from tiny_families import build_state_space

    src = build_state_space(tmp_path / "src")
    why = refusal("mamba")
    assert "no attention" in why and "\n" not in why
    with pytest.raises(ValueError) as e:
        export_onnx(src, tmp_path / "out" / "model.onnx")
    assert str(e.value) == f"{src} is {why}"
    assert not (tmp_path / "out").exists()
