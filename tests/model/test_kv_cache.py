"""The incremental `Decoder`s against the recompute path (`next_token_logits` of the whole prefix): the torch
backend's (the model's own past_key_values), the onnx backend's (FILE.decoder.onnx of an lmscope export) and
ELMo's (its forward LSTM states).

On the shipped demo GPT-2 and a tiny random GPT-2, each through both backends, and the demo ELMo: the same
logits at every step (also after beam reorders that duplicate and drop rows), the same tokens from generate()
for greedy, seeded sampling and beam search, and inspections unaffected by a decoder in use.
"""
import threading

import pytest
import torch

from bench.generation import Recompute  # the same model with its decoder off: generate() recomputes the prefix
from model.backends.base import Backend
from model.onnx.export import export_onnx
from model.generate import generate
from model.load import load_model

ATOL = 1e-4


@pytest.fixture(scope="module", params=["demo", "tiny", "demo-onnx", "tiny-onnx", "demo-elmo"])
def gpt2(request, tiny_models, tmp_path_factory):
    """A causal LM with a decoder (GPT-2 on each backend; ELMo's forward LM)."""
    if request.param == "demo-elmo":
        return load_model("demo/elmo")
    source = "demo/gpt2" if request.param.startswith("demo") else tiny_models["gpt2"]
    if request.param.endswith("onnx"):
        source = export_onnx(source, tmp_path_factory.mktemp("onnx") / "gpt2.onnx").path
    return load_model(source)


def _ids(m, text):
    return torch.tensor([m.tokenizer(text)["input_ids"]])


def test_only_causal_models_have_a_decoder(gpt2, tiny_models):
    assert gpt2.backend.decoder(_ids(gpt2, "the dogs")) is not None
    assert load_model(tiny_models["bert-mlm"]).backend.decoder(torch.tensor([[5, 6]])) is None
    assert Backend.decoder(gpt2.backend, torch.tensor([[5]])) is None  # the base default: no cache


def test_step_logits_equal_recompute_through_reorders(gpt2):
    be = gpt2.backend
    g = torch.Generator().manual_seed(0)
    rows = _ids(gpt2, "the dogs near the")  # (1, seq)
    dec = be.decoder(rows)
    assert torch.allclose(dec.logits(), be.next_token_logits(rows), atol=ATOL)
    # beam-like schedule: expand 1 -> 3 (duplicates), shuffle with duplicates, drop to 2, grow back to 4
    schedule = [[0, 0, 0], [2, 0, 2], [1, 1, 0], [2, 1], [0, 1, 1, 0], [3, 2, 1, 0], None, None]
    for idx in schedule:
        if idx is not None:
            idx = torch.tensor(idx)
            dec.reorder(idx)
            rows = rows[idx]
            assert torch.allclose(dec.logits(), be.next_token_logits(rows), atol=ATOL)  # reordered memo
        nxt = torch.randint(0, be.vocab_size, (rows.shape[0],), generator=g)
        dec.append(nxt)
        rows = torch.cat([rows, nxt[:, None]], dim=1)
        assert dec.length == rows.shape[1]
        assert torch.allclose(dec.logits(), be.next_token_logits(rows), atol=ATOL)
    # several appends before one logits() call (lazy), then a reorder with pending tokens
    for _ in range(2):
        nxt = torch.randint(0, be.vocab_size, (rows.shape[0],), generator=g)
        dec.append(nxt)
        rows = torch.cat([rows, nxt[:, None]], dim=1)
    idx = torch.tensor([3, 3, 0])
    dec.reorder(idx)
    rows = rows[idx]
    assert torch.allclose(dec.logits(), be.next_token_logits(rows), atol=ATOL)


def test_decoder_refuses_bad_rows_and_positions(gpt2):
    be = gpt2.backend
    dec = be.decoder(torch.tensor([[5, 6, 7]]))
    with pytest.raises(IndexError):
        dec.reorder(torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="one token per row"):
        dec.append(torch.tensor([1, 2]))
    full = be.decoder(torch.zeros(1, be.max_positions, dtype=torch.long))
    full.logits()
    full.append(torch.tensor([1]))
    with pytest.raises(ValueError, match="reads at most"):
        full.logits()


@pytest.fixture()
def spy(monkeypatch):
    """Counts recompute calls of next_token_logits (the torch backend's own, and the base class's that the
    onnx and ELMo backends use)."""
    import model.backends.torch_backend as tb

    calls = []
    for cls in (tb.TorchBackend, Backend):
        def counted(self, *a, _orig=cls.next_token_logits, **k):
            calls.append(1)
            return _orig(self, *a, **k)

        monkeypatch.setattr(cls, "next_token_logits", counted)
    return calls


@pytest.mark.parametrize("prompt", ["the dogs near the", "hello world, this"])
@pytest.mark.parametrize("kw", [
    dict(strategy="greedy", max_new_tokens=25),
    dict(strategy="greedy", max_new_tokens=12, repetition_penalty=1.3, trace=True),
    dict(strategy="sample", max_new_tokens=25, seed=7, top_k=20, temperature=0.9),
    dict(strategy="sample", max_new_tokens=25, seed=3, top_p=0.8),
    dict(strategy="beam", max_new_tokens=15, num_beams=3),
    dict(strategy="beam", max_new_tokens=12, num_beams=4, repetition_penalty=1.2, length_penalty=0.5),
    dict(strategy="beam", max_new_tokens=10, num_beams=2, early_stopping=True),
])
def test_generate_equals_recompute(gpt2, prompt, kw, spy):
    cached = generate(gpt2, prompt, **kw)
    assert spy == []  # the cached path never recomputed the prefix
    plain = generate(Recompute(gpt2), prompt, **kw)
    assert spy  # and the recompute path did
    assert cached.tokens == plain.tokens and cached.text == plain.text
    if kw["strategy"] == "beam":
        assert [(n.parent, n.token_id, n.status) for n in cached.beam_tree] == \
               [(n.parent, n.token_id, n.status) for n in plain.beam_tree]
        assert cached.settings["beam_score"] == pytest.approx(plain.settings["beam_score"], abs=1e-4)
    else:
        for a, b in zip(cached.steps, plain.steps):
            assert a.pick.id == b.pick.id and a.pick.prob == pytest.approx(b.pick.prob, abs=1e-4)


def test_long_prompt_stays_within_positions(gpt2):
    limit = gpt2.backend.max_positions
    ids = _ids(gpt2, "the dogs near the cat run quickly")[0].tolist()
    prompt = gpt2.tokenizer.decode((ids * limit)[:limit - 3])
    n = len(_ids(gpt2, prompt)[0])
    assert n < limit
    for kw in (dict(strategy="greedy"), dict(strategy="beam", num_beams=3)):
        r = generate(gpt2, prompt, max_new_tokens=20, **kw)
        assert r.settings["max_new_tokens"] == limit - n
        assert r.tokens == generate(Recompute(gpt2), prompt, max_new_tokens=20, **kw).tokens


def _inspect(be, ids):
    out = be.forward(ids, attentions=True, hidden_states=True)
    q, k, scale = out.qk[-1]() if out.qk else (torch.zeros(0), torch.zeros(0), 0.0)  # onnx: probabilities only
    return ([a() for a in out.attention or []], q, k, scale, out.hidden_states,  # ELMo: no attention
            out.logits_at(torch.arange(ids.shape[1])))


def _same(a, b):
    probs_a, qa, ka, sa, hs_a, lg_a = a
    probs_b, qb, kb, sb, hs_b, lg_b = b
    assert len(probs_a) == len(probs_b) and all(torch.equal(x, y) for x, y in zip(probs_a, probs_b))
    assert torch.equal(qa, qb) and torch.equal(ka, kb) and sa == sb
    assert all(torch.equal(x, y) for x, y in zip(hs_a, hs_b))
    assert torch.equal(lg_a, lg_b)


def test_inspection_unaffected_by_a_decoder_in_use(gpt2):
    be = gpt2.backend
    probe = _ids(gpt2, "the cat near the dogs sleeps")
    before = _inspect(be, probe)
    assert len(before[0]) == (be.num_layers if be.has_attention else 0)
    rows = _ids(gpt2, "the dogs")
    dec = be.decoder(rows)
    dec.reorder(torch.tensor([0, 0]))
    for step in range(6):
        nxt = dec.logits().argmax(-1)
        _same(_inspect(be, probe), before)  # an inspection between decode steps, same thread
        seen = []
        t = threading.Thread(target=lambda: seen.append(_inspect(be, probe)))  # and from another thread
        t.start()
        dec.append(nxt)
        rows = torch.cat([rows[[0, 0]] if rows.shape[0] == 1 else rows, nxt[:, None]], dim=1)
        got = dec.logits()
        t.join()
        _same(seen[0], before)
        assert torch.allclose(got, be.next_token_logits(rows), atol=ATOL)


def test_concurrent_decoders_are_independent(gpt2):
    """Two generations at once on the shared backend: each equals its own run alone."""
    kws = [dict(strategy="greedy", max_new_tokens=20), dict(strategy="beam", num_beams=3, max_new_tokens=15),
           dict(strategy="sample", seed=5, max_new_tokens=20)]
    alone = [generate(gpt2, "the dogs near the", **kw).tokens for kw in kws]
    results = [None] * len(kws)

    def run(i):
        results[i] = generate(gpt2, "the dogs near the", **kws[i]).tokens

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(kws))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == alone
