"""The onnxruntime backend (model.backends.onnx_backend) against transformers and the torch backend, on the
exports of the tiny seed models; load errors; graphs written by other tools."""
import functools
import json
import shutil
import threading
import warnings

import onnx
import pytest
import torch
import transformers

from model.backends.onnx_load import load_onnx, prune
from model.capabilities import infer_layout
from model.generate import generate
from model.inspect import inspect, max_tokens
from model.load import ModelLoadError, load_model
from model.onnx.export import export_onnx
from tiny_models import ARCHS

TEXT = "the dogs near the cat [MASK] quickly."
PAIR = "the cat sleeps."


@functools.lru_cache(maxsize=None)
def _eager(path: str, architecture: str):
    return getattr(transformers, architecture).from_pretrained(path, attn_implementation="eager").eval()


def _copy(report, dest, names):
    dest.mkdir(parents=True, exist_ok=True)
    for n in names:
        shutil.copy(report.path.parent / n, dest / n)
    return dest / "model.onnx"


# ---------------------------------------------------------------------------------------------------
# The backend against transformers


def _random_batch(tok, n_rows: int, lengths: list[int], segments: bool, seed: int):
    """Right-padded random token ids (no special or pad ids inside the real rows)."""
    g = torch.Generator().manual_seed(seed)
    allowed = torch.tensor([i for i in range(len(tok)) if i not in set(tok.all_special_ids)])
    n = max(lengths)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    ids = torch.full((n_rows, n), pad, dtype=torch.long)
    mask = torch.zeros((n_rows, n), dtype=torch.long)
    for r, length in enumerate(lengths):
        ids[r, :length] = allowed[torch.randint(len(allowed), (length,), generator=g)]
        mask[r, :length] = 1
    tti = (torch.randint(2, (n_rows, n), generator=g) * mask) if segments else None
    return ids, mask, tti


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("arch", ARCHS)
def test_forward_equals_transformers(exported, tiny_models, arch, batch):
    m = load_onnx(exported[arch].path, arch)
    ref = _eager(str(tiny_models[arch]), m.info.architecture)
    top = max_tokens(m)
    cases = [[n] for n in (5, 23, top)] if batch == 1 else [[top, 5, 23], [9, 17, 6]]
    for seed, lengths in enumerate(cases):
        ids, mask, tti = _random_batch(m.tokenizer, batch, lengths, m.info.model_type in ("bert", "albert"), seed)
        extra = {} if tti is None else {"token_type_ids": tti}
        with torch.no_grad():
            want = ref(input_ids=ids, attention_mask=mask, output_attentions=True, output_hidden_states=True, **extra)
        got = m.backend.forward(ids, mask, tti)
        real = mask.bool()  # (batch, seq): compare real query rows only
        assert len(got.attention) == len(want.attentions) == 2
        for layer, fn in enumerate(got.attention):
            ours, theirs = fn(), want.attentions[layer]  # (batch, head, query, key)
            assert ours.dtype == torch.float32 and ours.shape == theirs.shape
            diff = (ours - theirs).abs()[real[:, None, :, None].expand_as(ours)]
            assert diff.max() <= 1e-4, (arch, lengths, layer, diff.max())
            assert torch.equal(fn([2, 0]), ours[:, [2, 0]])
        for a, b in zip(got.hidden_states, want.hidden_states, strict=True):
            assert torch.allclose(a[real], b[real], atol=1e-4)
        if arch != "bert-encoder":
            logits = want.logits if getattr(want, "logits", None) is not None else want.prediction_logits
            ours = got.logits_at(torch.arange(ids.shape[1]))
            assert torch.allclose(ours[real], logits[real], atol=1e-4), (arch, lengths)
        if arch.endswith("pretraining"):
            pair = want.seq_relationship_logits if arch.startswith("bert") else want.sop_logits
            assert torch.allclose(got.pair_logits, pair, atol=1e-4)


@pytest.fixture(scope="module")
def long_models(tmp_path_factory):
    """arch -> (model dir, ONNX path) of tiny models that read 512 tokens (the shared ones stop at 64)."""
    from tiny_models import build

    root = tmp_path_factory.mktemp("long")
    out = {}
    for arch in ARCHS:
        src = build(arch, root, positions=520)
        out[arch] = (src, export_onnx(src, root / "onnx" / arch / "model.onnx").path)
    return out


@pytest.mark.parametrize("arch", ARCHS)
def test_parity_at_512_tokens_in_a_padded_batch(long_models, arch):
    src, path = long_models[arch]
    m = load_onnx(path, arch)
    ref = _eager(str(src), m.info.architecture)
    ids, mask, tti = _random_batch(m.tokenizer, 3, [512, 5, 200], m.info.model_type in ("bert", "albert"), 7)
    with torch.no_grad():
        want = ref(input_ids=ids, attention_mask=mask, output_attentions=True, **({} if tti is None else {"token_type_ids": tti}))
    got = m.backend.forward(ids, mask, tti)
    real = mask.bool()
    for fn, theirs in zip(got.attention, want.attentions, strict=True):
        ours = fn()  # (batch, head, query, key)
        assert (ours - theirs).abs()[real[:, None, :, None].expand_as(ours)].max() <= 1e-4
    if arch != "bert-encoder":
        logits = want.logits if getattr(want, "logits", None) is not None else want.prediction_logits
        assert torch.allclose(got.logits_at(torch.arange(512))[real], logits[real], atol=1e-4)


@pytest.mark.parametrize("arch", ARCHS)
def test_inspect_equals_the_torch_backend(exported, tiny_models, arch):
    om, tm = load_model(exported[arch].path), load_model(tiny_models[arch])
    assert om.info.backend == "onnx" and tm.info.backend == "torch"
    for field in ("capabilities", "task", "model_type", "architecture", "num_layers", "num_heads", "hidden_size",
                  "vocab_size", "max_positions", "num_parameters", "mask_token"):
        assert getattr(om.info, field) == getattr(tm.info, field), field
    kw = dict(text_pair=PAIR if arch.endswith("pretraining") else None, logit_lens=arch != "bert-encoder",
              pll=arch.endswith("-mlm"))
    a, b = inspect(om, TEXT, **kw), inspect(tm, TEXT, **kw)
    assert [t.to_json() for t in a.tokens] == [t.to_json() for t in b.tokens]
    assert torch.allclose(torch.from_numpy(a.hidden_norms), torch.from_numpy(b.hidden_norms), atol=1e-4)
    for f in ("entropy", "distance", "special_share", "max_entropy"):
        assert torch.allclose(torch.from_numpy(getattr(a.head_summary, f)), torch.from_numpy(getattr(b.head_summary, f)), atol=1e-4), f
    assert torch.allclose(torch.from_numpy(a.attention_layer(1).astype("float32")),
                          torch.from_numpy(b.attention_layer(1).astype("float32")), atol=1e-3)  # fp16 storage
    assert len(a.masks) == len(b.masks) == (1 if "mlm" in tm.info.capabilities else 0)
    for x, y in zip(a.masks, b.masks):
        assert [p.id for p in x.predictions] == [p.id for p in y.predictions]
        assert [p.prob for p in x.predictions] == pytest.approx([p.prob for p in y.predictions], abs=1e-5)
    if b.surprisal is not None:
        assert a.surprisal == pytest.approx(b.surprisal, abs=1e-4, nan_ok=True)
    if b.next_ids is not None:
        assert (a.next_ids == b.next_ids).all()
    if b.logit_lens is not None:
        assert (a.logit_lens.ids == b.logit_lens.ids).all()
        assert a.logit_lens.probs == pytest.approx(b.logit_lens.probs, abs=1e-5)
    if b.pair is not None:
        assert a.pair.kind == b.pair.kind and a.pair.prob == pytest.approx(b.pair.prob, abs=1e-5)


def test_greedy_generation_is_identical(exported, tiny_models):
    om, tm = load_model(exported["gpt2"].path), load_model(tiny_models["gpt2"])
    a = generate(om, "the dogs near the cat", strategy="greedy", max_new_tokens=30)
    b = generate(tm, "the dogs near the cat", strategy="greedy", max_new_tokens=30)
    assert a.text == b.text and a.tokens == b.tokens and len(a.tokens) == 30
    for x, y in zip(a.steps, b.steps):
        assert [c.prob for c in x.candidates] == pytest.approx([c.prob for c in y.candidates], abs=1e-5)


def test_lens_applies_gpt2s_final_norm_to_intermediate_layers_only(exported, tiny_models):
    om, tm = load_model(exported["gpt2"].path), load_model(tiny_models["gpt2"])
    ids = torch.tensor([tm.tokenizer("the dogs run")["input_ids"]])
    hs = tm.backend.forward(ids).hidden_states
    for layer, h in enumerate(hs):
        assert torch.allclose(om.backend.lens(h, layer), tm.backend.lens(h, layer), atol=1e-4), layer
    with pytest.raises(ValueError, match="out of range"):
        om.backend.lens(hs[0], 3)


def test_concurrent_forwards_agree(exported):
    m = load_onnx(exported["gpt2"].path, "gpt2")
    ids = torch.tensor([m.tokenizer("the quick brown fox jumps over the lazy dog.")["input_ids"]])
    want = m.backend.forward(ids).attention[1]()
    results, errors = [], []

    def work():
        try:
            for _ in range(5):
                results.append(torch.equal(m.backend.forward(ids).attention[1](), want))
        except Exception as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 20 and all(results)


# ---------------------------------------------------------------------------------------------------
# Load errors and graphs from elsewhere


def test_truncated_onnx_is_refused(exported, tmp_path):
    r = exported["bert-mlm"]
    path = _copy(r, tmp_path / "meta", ["model.onnx", "model.head.onnx", "model.lmscope.json", *r.tokenizer_files])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="corrupt or truncated"):
        load_model(path)
    bare = _copy(r, tmp_path / "bare", ["model.onnx", *r.tokenizer_files])  # no metadata to compare sizes with
    bare.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="corrupt or truncated"):
        load_onnx(bare, "bare")


def test_random_bytes_are_refused(exported, tmp_path):
    r = exported["gpt2"]
    path = _copy(r, tmp_path, list(r.tokenizer_files)).with_name("noise.onnx")
    path.write_bytes(torch.randint(0, 256, (5000,), generator=torch.Generator().manual_seed(1), dtype=torch.uint8).numpy().tobytes())
    with pytest.raises(ModelLoadError, match="not a readable ONNX model|corrupt or truncated"):
        load_onnx(path, "noise")


def test_missing_tokenizer_is_refused(exported, tmp_path):
    path = _copy(exported["gpt2"], tmp_path, ["model.onnx", "model.head.onnx", "model.lmscope.json"])
    with pytest.raises(ModelLoadError, match="no usable tokenizer beside model.onnx"):
        load_onnx(path, "gpt2")


def test_head_graph_alone_is_refused_and_missing_head_degrades(exported, tmp_path):
    r = exported["gpt2"]
    with pytest.raises(ModelLoadError, match="LM-head graph"):
        load_onnx(r.head_path, "head")
    path = _copy(r, tmp_path, ["model.onnx", "model.lmscope.json", *r.tokenizer_files])  # head removed
    m = load_onnx(path, "nohead")
    assert "lens" not in m.info.capabilities and "causal" in m.info.capabilities
    assert any("model.head.onnx" in w for w in m.info.warnings)
    want = load_onnx(r.path, "gpt2").backend.next_token_logits(torch.tensor([[5, 6, 7]]))
    assert torch.allclose(m.backend.next_token_logits(torch.tensor([[5, 6, 7]])), want, atol=1e-5)


def test_decoder_graph_alone_is_refused_and_a_missing_decoder_degrades(exported, tmp_path):
    r = exported["gpt2"]
    with pytest.raises(ModelLoadError, match="generation graph"):
        load_onnx(r.decoder_path, "decoder")
    path = _copy(r, tmp_path, ["model.onnx", "model.head.onnx", "model.lmscope.json", *r.tokenizer_files])
    m = load_onnx(path, "nodecoder")
    assert m.backend.decoder(torch.tensor([[5, 6]])) is None  # generation recomputes the prefix
    assert any("model.decoder.onnx" in w and "recomputes" in w for w in m.info.warnings)
    full = load_onnx(r.path, "gpt2")
    assert not full.info.warnings and full.backend.decoder(torch.tensor([[5, 6]])) is not None
    a = generate(m, "the dogs near the cat", strategy="beam", num_beams=3, max_new_tokens=12)
    assert a.tokens == generate(full, "the dogs near the cat", strategy="beam", num_beams=3, max_new_tokens=12).tokens


def test_graph_without_attention_outputs_still_loads(tiny_models, tmp_path):
    export_onnx(tiny_models["bert-mlm"], tmp_path / "m.onnx", attentions=False)
    m = load_onnx(tmp_path / "m.onnx", "noattn")
    assert "attention" not in m.info.capabilities and {"mlm", "lens", "hidden"} <= set(m.info.capabilities)
    assert "no attention outputs" in m.info.unavailable["attention"]
    a, b = inspect(m, TEXT), inspect(load_model(tiny_models["bert-mlm"]), TEXT)
    assert a.head_summary is None and not a.has_attention and a.num_layers == 0
    assert [p.id for p in a.masks[0].predictions] == [p.id for p in b.masks[0].predictions]
    with pytest.raises(ValueError, match="no attention outputs"):
        a.attention(0, 0)


class _Foreign(torch.nn.Module):
    """What another exporter might write: logits and per-layer attentions, no lmscope metadata."""

    def __init__(self, model, outputs):
        super().__init__()
        self.model, self.outputs = model, outputs

    def forward(self, input_ids, attention_mask):
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, output_attentions=True,
                         output_hidden_states=True, return_dict=True, **({"use_cache": False} if "gpt2" in type(self.model).__name__.lower() else {}))
        values = {"logits": out.logits, "last_hidden_state": out.hidden_states[-1]}
        values |= {f"attentions.{i}": a for i, a in enumerate(out.attentions)}
        return tuple(values[n] for n in self.outputs)


def _foreign_export(tiny_models, arch, outputs, dest):
    src = tiny_models[arch]
    model = _eager(str(src), json.loads((src / "config.json").read_text())["architectures"][0])
    dest.mkdir()
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(src / f, dest / f)
    ids = torch.tensor([[5, 6, 7, 8, 9], [5, 6, 7, 0, 0]])
    axes = {"input_ids": {0: "b", 1: "s"}, "attention_mask": {0: "b", 1: "s"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_Foreign(model, outputs).eval(), (ids, (ids > 0).long()), str(dest / "model.onnx"), dynamo=False,
                          input_names=["input_ids", "attention_mask"], output_names=outputs, dynamic_axes=axes)
    return dest / "model.onnx"


def test_foreign_graph_with_per_layer_attentions(tiny_models, tmp_path):
    path = _foreign_export(tiny_models, "gpt2", ["logits", "attentions.0", "attentions.1"], tmp_path / "f")
    m = load_onnx(path, "foreign")
    assert m.info.task == "causal-lm" and m.info.model_type == "gpt2"
    assert set(m.info.capabilities) == {"attention", "causal"}
    assert "lens" in m.info.unavailable and "hidden" in m.info.unavailable
    assert any("no lmscope metadata" in w for w in m.info.warnings)
    assert (m.backend.num_layers, m.backend.num_heads) == (2, 4)
    tm = load_model(tiny_models["gpt2"])
    ids = torch.tensor([tm.tokenizer("the dogs run fast")["input_ids"]])
    got, want = m.backend.forward(ids), tm.backend.forward(ids)
    for f, g in zip(got.attention, want.attention, strict=True):
        assert torch.allclose(f(), g(), atol=1e-4)
    assert generate(m, "the dogs", max_new_tokens=8).text == generate(tm, "the dogs", max_new_tokens=8).text


def test_foreign_masked_lm_without_attention(tiny_models, tmp_path):
    path = _foreign_export(tiny_models, "bert-mlm", ["logits", "last_hidden_state"], tmp_path / "f")
    m = load_onnx(path, "foreign")
    assert m.info.task == "masked-lm" and set(m.info.capabilities) == {"mlm"}
    assert "no attention outputs" in m.info.unavailable["attention"]
    a, b = inspect(m, TEXT), inspect(load_model(tiny_models["bert-mlm"]), TEXT)
    assert [p.id for p in a.masks[0].predictions] == [p.id for p in b.masks[0].predictions]


@pytest.mark.parametrize("arch", ["gpt2", "bert-mlm"])
def test_foreign_logits_only_graph_inspects_and_answers_the_cli(tiny_models, tmp_path, arch, capsys):
    """The barest export another tool writes: logits alone. Predictions still work; no layers are claimed."""
    path = _foreign_export(tiny_models, arch, ["logits"], tmp_path / "f")
    text = "the dogs run" if arch == "gpt2" else "the dogs [MASK] run"
    r = inspect(load_onnx(path, "foreign"), text)
    assert r.num_layers == 0 and r.hidden_norms.shape == (0, len(r.tokens)) and not r.has_attention
    from app.cli import main

    assert main(["inspect", str(path), text, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["num_layers"] == 0 and len(out["tokens"]) == len(r.tokens)
    assert main(["inspect", str(path), text, "--json", "--layer", "0", "--head", "0"]) == 2
    assert "attention" in capsys.readouterr().err


def test_exports_under_the_runs_dir_are_listed_and_load_by_name(exported, tmp_path, monkeypatch, capsys):
    from app.cli import main
    from model.registry import find, list_models

    runs = tmp_path / "runs"
    dest = runs / "onnx" / "gpt2-export"
    shutil.copytree(exported["gpt2"].path.parent, dest)
    monkeypatch.setenv("LMSCOPE_RUNS", str(runs))
    e = find("runs/onnx/gpt2-export/model", exact=True)
    assert e is not None and e.source == "onnx" and e.model_type == "gpt2" and e.path.endswith("model.onnx")
    assert not any(x.path.endswith(".head.onnx") for x in list_models())
    assert main(["generate", e.name, "the dogs", "--max-new-tokens", "3", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["tokens"]) == 3
    by_name, by_path = load_model(e.name), load_model(dest / "model.onnx")
    assert by_name.backend is by_path.backend and (by_name.name, by_path.name) == (e.name, "model.onnx")
    assert all(e.name in why for why in by_name.info.unavailable.values())
    assert all("model.onnx" in why and e.name not in why for why in by_path.info.unavailable.values())


def test_layout_inference_from_output_names():
    lay = infer_layout({"prediction_logits": 3, "attentions": 5, "hidden_states": 4, "seq_relationship_logits": 2})
    assert (lay.logits, lay.attentions_stacked, lay.hidden_stacked, lay.pair_kind) == ("prediction_logits", True, True, "nsp")
    lay = infer_layout({"last_hidden_state": 3, "hidden_states.10": 3, "hidden_states.2": 3, "attn_0": 4})
    assert lay.hidden_states == ("hidden_states.2", "hidden_states.10") and lay.attentions == ("attn_0",)
    assert infer_layout({"logits": 3}).attentions == ()


def test_prune_keeps_every_input_and_the_other_outputs_exactly(exported):
    from model.backends.onnx_backend import make_session

    proto = onnx.load(str(exported["gpt2"].path))
    pruned = prune(proto, {"attentions", "hidden_states"})
    assert [o.name for o in pruned.graph.output] == ["attentions", "hidden_states"]
    assert [i.name for i in pruned.graph.input] == [i.name for i in proto.graph.input]
    assert len(pruned.graph.node) < len(proto.graph.node)
    onnx.checker.check_model(pruned)
    feed = {"input_ids": torch.tensor([[5, 6, 7, 8]]).numpy(), "attention_mask": torch.ones(1, 4, dtype=torch.long).numpy()}
    full, part = make_session(proto.SerializeToString()), make_session(pruned.SerializeToString())
    for a, b in zip(full.run(["attentions", "hidden_states"], feed), part.run(None, feed)):
        assert (a == b).all()
