"""The engine against transformers: attention maps, logits, hidden states, and inspect() views."""
import numpy as np
import pytest
import torch
import transformers

from model.inspect import InputError, encode, inspect
from model.load import load_model
from tiny_models import ARCHS

TEXT = "the dogs near the cat [MASK] quickly."


def _eager(path, arch_name):
    cls = getattr(transformers, arch_name)
    return cls.from_pretrained(str(path), attn_implementation="eager").eval()


@pytest.mark.parametrize("padded", [True, False], ids=["padded-batch", "single"])
@pytest.mark.parametrize("arch", ARCHS)
def test_attention_equals_eager_output_attentions(tiny_models, arch, padded):
    m = load_model(tiny_models[arch])
    ref = _eager(tiny_models[arch], m.info.architecture)
    tok = m.tokenizer
    # a padded batch of two: padded rows must match on every real query
    texts = ("the quick brown fox jumps over the lazy dog.", "hello world")
    rows = [tok(t)["input_ids"] for t in (texts if padded else texts[:1])]
    n = max(map(len, rows))
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    batch = {"input_ids": torch.tensor([r + [pad] * (n - len(r)) for r in rows]),
             "attention_mask": torch.tensor([[1] * len(r) + [0] * (n - len(r)) for r in rows])}
    with torch.no_grad():
        want = ref.base_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                              output_attentions=True, output_hidden_states=True)
    got = m.backend.forward(batch["input_ids"], batch["attention_mask"])
    assert len(got.attention) == len(want.attentions) == m.backend.num_layers
    real = batch["attention_mask"].bool()
    for layer, fn in enumerate(got.attention):
        ours, theirs = fn(), want.attentions[layer]  # (batch, head, query, key)
        diff = (ours - theirs).abs()[real[:, None, :, None].expand_as(ours)]
        assert diff.max().item() <= 1e-5, (arch, layer, diff.max().item())
    for a, b in zip(got.hidden_states, want.hidden_states):
        assert torch.allclose(a[real], b[real], atol=1e-5)


@pytest.mark.parametrize("arch", [a for a in ARCHS if a != "bert-encoder"])
def test_logits_equal_the_models_own(tiny_models, arch):
    m = load_model(tiny_models[arch])
    ref = _eager(tiny_models[arch], m.info.architecture)
    enc = m.tokenizer("the dogs run.", return_tensors="pt")
    with torch.no_grad():
        full = ref(input_ids=enc["input_ids"])
    logits = full.logits if hasattr(full, "logits") else full.prediction_logits
    got = m.backend.forward(enc["input_ids"]).logits_at(torch.arange(enc["input_ids"].shape[1]))
    assert torch.allclose(got, logits, atol=1e-5)


def test_tokens_spans_map_back_to_text(tiny_models):
    for arch in ("bert-mlm", "roberta-mlm", "albert-pretraining", "gpt2"):
        m = load_model(tiny_models[arch])
        text = "Unbelievable, the dogs [MASK] here!"
        enc = encode(m, text)
        for t in enc.tokens:
            assert 0 <= t.start <= t.end <= len(text)
            if t.special:
                assert t.word is None
        words = {t.word for t in enc.tokens if not t.special}
        assert min(words) == 0


def test_masked_lm_predictions_and_pll(tiny_models):
    m = load_model(tiny_models["bert-mlm"])
    r = inspect(m, TEXT, top_k=7, pll=True)
    assert len(r.masks) == 1
    mp = r.masks[0]
    assert r.tokens[mp.position].text == "[MASK]" and len(mp.predictions) == 7
    probs = [p.prob for p in mp.predictions]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1
    # pll: masking token i alone and reading p(token_i) by hand
    i = 2
    ids = torch.tensor([[t.id for t in r.tokens]])
    ids[0, i] = m.tokenizer.mask_token_id
    ref = _eager(tiny_models["bert-mlm"], "BertForMaskedLM")
    with torch.no_grad():
        p = torch.softmax(ref(input_ids=ids).logits[0, i], -1)[r.tokens[i].id]
    assert r.surprisal[i] == pytest.approx(-np.log2(p.item()), abs=1e-4)
    assert np.isnan(r.surprisal[0])  # [CLS]


def test_roberta_accepts_bert_style_mask(tiny_models):
    m = load_model(tiny_models["roberta-mlm"])
    r = inspect(m, "the dogs [MASK] here.")
    assert len(r.masks) == 1 and r.tokens[r.masks[0].position].text == "<mask>"


def test_causal_surprisal_and_next_tokens(tiny_models):
    m = load_model(tiny_models["gpt2"])
    r = inspect(m, "the dogs near the cat run", top_k=4)
    ref = _eager(tiny_models["gpt2"], "GPT2LMHeadModel")
    ids = torch.tensor([[t.id for t in r.tokens]])
    with torch.no_grad():
        logp = torch.log_softmax(ref(input_ids=ids).logits[0], -1)
    want = -logp[:-1].gather(1, ids[0, 1:, None])[:, 0] / np.log(2)
    assert np.isnan(r.surprisal[0])
    assert np.allclose(r.surprisal[1:], want.numpy(), atol=1e-4)
    assert r.next_ids.shape == (len(r.tokens), 4)
    assert (r.next_ids[:, 0] == logp.argmax(-1).numpy()).all()


def test_causal_predictions_in_chunks_equal_a_full_log_softmax(tiny_models, monkeypatch):
    """Chunks of 3 positions (the in-place logsumexp per chunk): probabilities and surprisal as one log-softmax."""
    import model.inspect as engine

    m = load_model(tiny_models["gpt2"])
    monkeypatch.setattr(engine, "LOGITS_BYTES", 4 * m.backend.vocab_size * 3)
    assert engine.chunk_positions(m.backend.vocab_size) == 3
    r = inspect(m, "the dogs near the cat run and the birds sing", top_k=5)
    ids = torch.tensor([[t.id for t in r.tokens]])
    with torch.no_grad():
        logp = torch.log_softmax(_eager(tiny_models["gpt2"], "GPT2LMHeadModel")(input_ids=ids).logits[0], -1)
    assert len(r.tokens) > 6
    assert np.allclose(r.next_probs, logp.exp().gather(1, torch.from_numpy(r.next_ids)).numpy(), atol=1e-5)
    want = -logp[:-1].gather(1, ids[0, 1:, None])[:, 0] / np.log(2)
    assert np.allclose(r.surprisal[1:], want.numpy(), atol=1e-4)


@pytest.mark.parametrize("arch", ["bert-mlm", "gpt2", "albert-pretraining", "distilbert-mlm", "roberta-mlm"])
def test_logit_lens_last_layer_equals_output(tiny_models, arch):
    m = load_model(tiny_models[arch])
    r = inspect(m, "the dogs near the cat", logit_lens=True, lens_top_k=3)
    lens = r.logit_lens
    assert lens.ids.shape == (m.backend.num_layers + 1, len(r.tokens), 3)
    out = m.backend.forward(torch.tensor([[t.id for t in r.tokens]]))
    top = torch.softmax(out.logits_at(torch.arange(len(r.tokens)))[0], -1).topk(3)
    assert np.array_equal(lens.ids[-1], top.indices.numpy())
    assert np.allclose(lens.probs[-1], top.values.numpy(), atol=1e-5)


@pytest.mark.parametrize("arch,kind", [("bert-pretraining", "nsp"), ("albert-pretraining", "sop")])
def test_pair_heads(tiny_models, arch, kind):
    m = load_model(tiny_models[arch])
    r = inspect(m, "the dog runs.", "it sleeps.")
    assert r.pair.kind == kind and 0 < r.pair.prob < 1
    assert {t.segment for t in r.tokens} == {0, 1}
    ref = _eager(tiny_models[arch], m.info.architecture)
    enc = m.tokenizer("the dog runs.", "it sleeps.", return_tensors="pt", return_token_type_ids=True)
    with torch.no_grad():
        o = ref(**enc)
    rel = o.seq_relationship_logits if kind == "nsp" else o.sop_logits
    assert r.pair.prob == pytest.approx(torch.softmax(rel[0], -1)[0].item(), abs=1e-5)


def test_encoder_says_what_is_unavailable(tiny_models):
    m = load_model(tiny_models["bert-encoder"])
    assert m.info.task == "encoder"
    assert {"mlm", "causal", "lens"} <= set(m.info.unavailable)
    r = inspect(m, "the dogs run.")
    assert r.masks == [] and r.surprisal is None and r.has_attention


def test_truncation_warning_says_where(tiny_models):
    m = load_model(tiny_models["bert-mlm"])
    text = " ".join(["dogs"] * 200)
    r = inspect(m, text)
    assert len(r.tokens) == 64
    assert any("truncated after character" in w for w in r.warnings)


@pytest.mark.parametrize("text", ["", "   \n\t "])
def test_empty_text_is_refused(tiny_models, text):
    with pytest.raises(InputError, match="empty"):
        inspect(load_model(tiny_models["gpt2"]), text)


def test_odd_unicode_keeps_offsets(tiny_models):
    m = load_model(tiny_models["gpt2"])
    text = "a\x00b \u202eabc e\u0301 \U0001F600 漢字 \ud800x"
    enc = encode(m, text)
    assert enc.tokens and all(0 <= t.start <= t.end <= len(text) for t in enc.tokens)


def test_layer_head_out_of_range(tiny_models):
    r = inspect(load_model(tiny_models["gpt2"]), "hello world")
    with pytest.raises(ValueError, match="layer 9 is out of range"):
        r.attention(9, 0)
    with pytest.raises(ValueError, match="head 4 is out of range"):
        r.attention(0, 4)


@pytest.mark.parametrize("arch", ["bert-mlm", "gpt2", "albert-pretraining", "distilbert-mlm"])
def test_forward_qk_gives_the_queries_and_keys_of_the_attention(tiny_models, arch):
    from kernels.attention import attention_probs

    m = load_model(tiny_models[arch])
    ids = m.tokenizer("the dogs near the cat run.", return_tensors="pt")["input_ids"]
    out = m.backend.forward(ids)
    assert len(out.qk) == len(out.attention) == m.backend.num_layers
    for layer, (qk, probs) in enumerate(zip(out.qk, out.attention)):
        q, k, scale = qk()  # (1, H, N, d) each
        assert q.shape == k.shape == (1, m.backend.num_heads, ids.shape[1], q.shape[-1])
        assert scale == pytest.approx(q.shape[-1] ** -0.5)
        assert torch.allclose(attention_probs(q, k, scale=scale, causal=m.backend.causal), probs(), atol=1e-6)
        q2, k2, _ = qk([2, 0])
        assert torch.equal(q2, q[:, [2, 0]]) and torch.equal(k2, k[:, [2, 0]])
    assert m.backend.forward(ids, attentions=False).qk is None


def test_forward_qk_repeats_grouped_key_heads():
    from kernels.attention import attention_probs
    from model.backends.torch_backend import TorchBackend

    torch.manual_seed(0)
    q, k = torch.randn(1, 4, 5, 8), torch.randn(1, 2, 5, 8)  # 4 query heads share 2 key heads
    get = TorchBackend._lazy_qk(q, k, None)
    qa, ka, scale = get()
    assert ka.shape == (1, 4, 5, 8) and torch.equal(ka, k.repeat_interleave(2, dim=1)) and scale == 8 ** -0.5
    q1, k1, _ = get([3, 1])
    assert torch.equal(k1, k[:, [1, 0]])  # query head 3 reads key head 1, query head 1 key head 0
    assert torch.allclose(attention_probs(q1, k1), attention_probs(q, k)[:, [3, 1]])
