"""Parity of every family lmscope loads with transformers itself: tiny random checkpoints of Llama, Qwen2,
Mistral, Phi-3, Gemma, GPT-Neo, OPT, ELECTRA, DeBERTa-v2, XLM-RoBERTa and ModernBERT (tests/tiny_families.py)
plus the seed GPT-2, BERT, RoBERTa, ALBERT and DistilBERT (tests/tiny_models.py).

For each: attention maps equal transformers' eager `output_attentions` (batch 1 past the sliding window, and
a right-padded batch), masked-out regions of sliding/local attention are exactly zero, greedy generation
equals `generate()` (through lmscope's key/value-cache decoder, whose logits equal recomputing), fill-mask
top-k equals the model's own logits, and the logit lens' last layer equals the model's logits.
"""
from __future__ import annotations

import pytest
import torch
import transformers

from model.generate import generate
from model.inspect import inspect
from model.load import load_model
from tiny_families import FAMILIES, WINDOW, assert_masks_match, build_family

SEEDS = {"gpt2": "gpt2", "bert": "bert-mlm", "roberta": "roberta-mlm", "albert": "albert-pretraining",
         "distilbert": "distilbert-mlm"}
ALL = list(FAMILIES) + list(SEEDS)
CAUSAL = [n for n, f in FAMILIES.items() if f[1] == "causal"] + ["gpt2"]
MASKED = [n for n, f in FAMILIES.items() if f[1] == "masked"] + ["bert", "roberta", "albert", "distilbert"]
LONG = "the quick brown fox jumps over the lazy dog"  # 10 to 40 tokens: past every WINDOW, within 60 positions
SHORT = "hello world"
TOL = 1e-4


@pytest.fixture(scope="module")
def paths(tiny_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    out = {name: build_family(name, root) for name in FAMILIES}
    out.update({name: tiny_models[arch] for name, arch in SEEDS.items()})
    return out


def _reference(m, path):
    """transformers' own model of the same class, eager attention."""
    cls = getattr(transformers, m.info.architecture)
    return cls.from_pretrained(str(path), attn_implementation="eager", dtype=torch.float32).eval()


def _logits(out):
    return out.logits if getattr(out, "logits", None) is not None else out.prediction_logits


def _batch(tok, texts):
    enc = tok(texts, padding=True, return_tensors="pt", return_token_type_ids=False)
    return enc["input_ids"], enc["attention_mask"]


@pytest.mark.parametrize("name", ALL)
def test_attention_maps_equal_eager(name, paths):
    m = load_model(paths[name])
    assert "attention" in m.info.capabilities, m.info.unavailable
    ref = _reference(m, paths[name])
    tok = m.tokenizer
    if tok.pad_token is None:
        tok = transformers.AutoTokenizer.from_pretrained(str(paths[name]))
        tok.pad_token = tok.eos_token
    tok.padding_side = "right"
    for texts in ([LONG], [LONG, SHORT]):
        ids, mask = _batch(tok, texts)
        assert WINDOW + 2 < ids.shape[1] <= 60
        with torch.inference_mode():
            want = ref(input_ids=ids, attention_mask=mask, output_attentions=True).attentions
        got = m.backend.forward(ids, mask, attentions=True, hidden_states=False).attention
        assert len(got) == len(want) == m.backend.num_layers
        lengths = mask.sum(1).tolist()
        for layer, (g, w) in enumerate(zip(got, want)):
            g = g(None)
            assert g.shape == w.shape, (layer, g.shape, w.shape)  # one map per query head (GQA included)
            for b, n in enumerate(lengths):  # the real tokens' rows; padded keys get nothing
                torch.testing.assert_close(g[b, :, :n, :n], w[b, :, :n, :n].float(), atol=TOL, rtol=0)
                if n < ids.shape[1]:
                    assert float(g[b, :, :n, n:].abs().max()) < TOL


@pytest.mark.parametrize("name", ["mistral", "qwen2", "gpt-neo", "modernbert"])
def test_sliding_window_regions_are_masked(name, paths):
    """Past the window, the maps of the windowed layers are exactly zero (shown as masked)."""
    m = load_model(paths[name])
    r = inspect(m, LONG, summaries=False)
    n = len(r.tokens)
    far = torch.ones(n, n, dtype=torch.bool).tril(-(WINDOW + 1))  # key more than WINDOW before the query
    if name == "modernbert":
        far = far | far.T
    windowed = 0
    for layer in range(r.num_layers):
        a = torch.as_tensor(r.attention(layer, 0))
        if float(a[far].abs().max()) == 0.0:
            windowed += 1
    assert windowed >= 1


@pytest.mark.parametrize("name", CAUSAL)
def test_greedy_generation_equals_transformers(name, paths):
    from model.generate import prompt_ids

    m = load_model(paths[name])
    ref = _reference(m, paths[name])
    res = generate(m, "the quick brown", strategy="greedy", max_new_tokens=8)
    ids = prompt_ids(m, "the quick brown")
    with torch.inference_mode():
        want = ref.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=8, do_sample=False,
                            pad_token_id=m.tokenizer.eos_token_id)[0, ids.shape[1]:].tolist()
    assert [t for _, t in res.tokens] == want[:len(res.tokens)]
    # the key/value cache gives the logits recomputing gives
    dec = m.backend.decoder(ids)
    assert dec is not None
    seq = ids
    for t in want[:4]:
        torch.testing.assert_close(dec.logits(), m.backend.next_token_logits(seq), atol=TOL, rtol=0)
        dec.append(torch.tensor([t]))
        seq = torch.cat([seq, torch.tensor([[t]])], 1)


@pytest.mark.parametrize("name", MASKED)
def test_fill_mask_topk_equals_model_logits(name, paths):
    m = load_model(paths[name])
    assert "mlm" in m.info.capabilities, m.info.unavailable
    mask = m.tokenizer.mask_token
    r = inspect(m, f"the quick brown {mask} jumps over the lazy dog", top_k=5, summaries=False)
    ref = _reference(m, paths[name])
    ids = torch.tensor([[t.id for t in r.tokens]])
    with torch.inference_mode():
        logits = _logits(ref(input_ids=ids))[0]
    assert_masks_match(r, logits, 5, TOL)


@pytest.mark.parametrize("name", ALL)
def test_logit_lens_last_layer_equals_model_logits(name, paths):
    m = load_model(paths[name])
    assert "lens" in m.info.capabilities, m.info.unavailable
    r = inspect(m, LONG, logit_lens=True, lens_top_k=3, summaries=False)
    ref = _reference(m, paths[name])
    ids = torch.tensor([[t.id for t in r.tokens]])
    with torch.inference_mode():
        logits = _logits(ref(input_ids=ids))[0]  # (N, vocab)
    top = torch.softmax(logits, -1).topk(3)
    assert r.logit_lens.ids.shape[0] == m.backend.num_layers + 1
    assert r.logit_lens.ids[-1].tolist() == top.indices.tolist()
    torch.testing.assert_close(torch.as_tensor(r.logit_lens.probs[-1]), top.values, atol=TOL, rtol=0)


def test_listing_reads_parameters_and_dtype_from_headers(paths, monkeypatch):
    """`lmscope models` and the Models page: every family, its parameter count and dtype without torch."""
    from model.registry import list_models

    root = paths["llama"].parent
    monkeypatch.setenv("LMSCOPE_DEMO_MODELS", str(root))
    entries = {e.name: e for e in list_models()}
    for name in FAMILIES:
        e = entries[f"demo/{name}"]
        m = load_model(paths[name])
        assert e.dtype == "float32" and not e.note
        assert e.parameters == m.info.num_parameters or m.info.task == "masked-lm"  # tied decoder bias aside
        assert e.parameters > 0


def test_gqa_maps_are_per_query_head_with_their_group(paths):
    from app.figures.attention import kv_caption

    m = load_model(paths["llama"])
    assert (m.backend.num_heads, m.backend.num_kv_heads) == (4, 2)
    assert kv_caption(4, 2, 3).endswith("head 3 uses key/value head 1, with heads 2-3.")
    assert kv_caption(4, 4, 0) is None
    assert m.backend.rotary and not load_model(paths["gpt2"]).backend.rotary


@pytest.mark.parametrize("name", ["llama", "electra", "xlm-roberta", "deberta-v2", "modernbert"])
def test_tokens_keep_markers_and_offsets(name, paths):
    """Byte-level BPE (Ġ), WordPiece (##) and Unigram / SentencePiece (▁): each piece, markers stripped,
    is the text at its offsets."""
    from model.inspect import encode

    m = load_model(paths[name])
    text = "the quick brown fox, unbelievable!"
    enc = encode(m, text)
    pieces = [t for t in enc.tokens if not t.special]
    assert pieces and pieces[0].start == 0
    for t in pieces:
        assert 0 <= t.start < t.end <= len(text), t
        piece = t.text.removeprefix("##").replace("Ġ", "").replace("▁", "")
        assert piece == text[t.start:t.end].strip(), (t, text[t.start:t.end])


def test_a_model_without_recordable_attention_still_loads(tmp_path):
    """Mamba (a state-space model): no attention to record; it loads, says why attention is missing, and the
    other views work (hidden norms, logit lens, generation by recomputing the prefix)."""
    from tiny_families import build_state_space

    m = load_model(build_state_space(tmp_path))
    assert "attention" not in m.info.capabilities and "attention heads" in m.info.unavailable["attention"]
    assert {"causal", "lens", "hidden"} <= set(m.info.capabilities)
    r = inspect(m, "the quick brown fox", logit_lens=True)
    assert not r.has_attention and r.logit_lens is not None
    assert m.backend.decoder(torch.tensor([[1, 2]])) is None
    assert 1 <= len(generate(m, "the quick", max_new_tokens=3).tokens) <= 3


def test_roberta_style_positions_leave_room_for_the_padding_offset(paths):
    from model.inspect import max_tokens

    for name, roberta_style in (("xlm-roberta", True), ("roberta", True), ("bert", False), ("llama", False)):
        m = load_model(paths[name])
        offset = m.backend.model.config.pad_token_id + 1 if roberta_style else 0  # positions start after padding
        assert max_tokens(m) == m.backend.max_positions - offset
    m = load_model(paths["xlm-roberta"])
    r = inspect(m, "the quick brown fox " * 40, summaries=False)  # past the positions: truncated, no IndexError
    assert len(r.tokens) == max_tokens(m) and any("truncated" in w for w in r.warnings)
