"""Property tests (hypothesis) on the sampling kernels, masking and tokenization, beyond what
tests/kernels/test_sampling.py, tests/kernels/test_masking.py and tests/model/test_spans_property.py
already check (there: each filter's output is a distribution, top-k ties, specials never selected by the
bare kernel, spans cover the input). Here:

- top-p keeps the SMALLEST set of most probable tokens that reaches p (dropping its least probable
  token falls below p), on logits with many ties too;
- top-k keeps exactly k tokens unless the k-th score is tied, and then exactly the tied ones as well;
- the whole pipeline (every filter on at once, any valid settings): every stage is a distribution, filters
  only ever remove tokens, and a seeded draw only picks a token that survived;
- masking never selects a special token through the real paths: `corrupt` on real tokenizers (whole-word
  or not, any rate) and the training batches of BERT / RoBERTa / ALBERT (static, dynamic, whole-word),
  and random replacements are never special tokens in training;
- lone surrogates are replaced one character for one, so spans still index the caller's string.
"""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from kernels import sampling
from kernels.sampling import SamplingConfig

EPS = 1e-5
logit_lists = st.one_of(
    st.lists(st.floats(-30, 30, allow_nan=False, width=32), min_size=2, max_size=60),
    st.lists(st.integers(-3, 3).map(float), min_size=2, max_size=60),  # many exact ties
)


@settings(max_examples=300, deadline=None)
@given(logits=logit_lists, p=st.floats(0.001, 1.0))
def test_top_p_keeps_the_smallest_set_that_reaches_p(logits, p):
    s = torch.tensor([logits])
    probs = torch.softmax(s, -1)[0].double()
    keep = torch.isfinite(sampling.top_p(s, p))[0]
    kept = probs[keep]
    assert keep.sum() >= 1
    assert kept.sum() >= p - EPS  # reaches p
    if keep.sum() > 1:
        assert kept.sum() - kept.min() < p + EPS  # without its least probable token it would not
    if (~keep).any():
        assert kept.min() >= probs[~keep].max() - 1e-12  # the most probable tokens, ties in either order


@settings(max_examples=300, deadline=None)
@given(logits=logit_lists, k=st.integers(1, 70))
def test_top_k_keeps_exactly_k_unless_the_kth_score_is_tied(logits, k):
    s = torch.tensor([logits])
    keep = torch.isfinite(sampling.top_k(s, k))[0]
    kk = min(k, len(logits))
    ordered = sorted(logits, reverse=True)
    kth = ordered[kk - 1]
    assert keep.sum() == sum(x >= kth for x in logits)
    if kk == len(logits) or ordered[kk] < kth:
        assert keep.sum() == kk  # no tie at the boundary: exactly k
    assert all(logits[i] >= kth for i in range(len(logits)) if keep[i])


configs = st.builds(
    SamplingConfig,
    temperature=st.floats(0.05, 5.0), top_k=st.integers(0, 60), top_p=st.floats(0.01, 1.0),
    typical_p=st.floats(0.01, 1.0), min_p=st.floats(0.0, 0.99), repetition_penalty=st.floats(0.5, 3.0),
    do_sample=st.booleans(), seed=st.integers(0, 2**31),
)


@settings(max_examples=200, deadline=None)
@given(logits=logit_lists, cfg=configs, prev=st.lists(st.integers(0, 59), min_size=1, max_size=8))
def test_the_whole_pipeline_gives_distributions_and_only_removes(logits, cfg, prev):
    v = len(logits)
    assume(cfg.top_k <= v)
    cfg.validate(v)
    ids = torch.tensor([[i % v for i in prev]])
    final, stages = sampling.filter_trace(torch.tensor(logits), ids, cfg)
    kept_before = v
    for stage in stages:
        assert (stage.probs >= 0).all() and abs(float(stage.probs.sum()) - 1) < EPS, stage.name
        assert not torch.isnan(stage.probs).any()
        assert 1 <= int(stage.kept) <= kept_before, stage.name  # a filter never brings a token back
        assert int(stage.kept) == int((stage.probs > 0).sum()) or int(stage.kept) > int((stage.probs > 0).sum())
        kept_before = int(stage.kept)
    pick = int(sampling.pick(final, cfg, torch.Generator().manual_seed(cfg.seed)))
    assert math.isfinite(float(final[pick]))


# ---------------------------------------------------------------------------------------------------
# Masking through the real tokenizers and the training data


TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)) | st.sampled_from(
    list("the dogs run [MASK] <mask> [CLS] [SEP] <s> </s> \u0301\u202e\U0001F600\u6f22")), min_size=1, max_size=60)


@pytest.mark.parametrize("arch", ["bert-mlm", "roberta-mlm", "albert-pretraining"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=TEXT, p=st.floats(0.0, 1.0), seed=st.integers(0, 10_000), whole_word=st.booleans())
def test_corruption_never_selects_a_special_token(tiny_models, arch, text, p, seed, whole_word):
    from model.load import load_model
    from model.corruption import corrupt

    assume(text.strip())
    m = load_model(tiny_models[arch])
    demo = corrupt(m, text, seed, mlm_probability=p, whole_word=whole_word)
    from model.inspect import encode

    enc = encode(m, text)
    for tok, row in zip(enc.tokens, demo.rows):
        if tok.special:
            assert row.action == "special" and not row.predicted and row.shown == tok.text
        elif p == 1.0:
            assert row.predicted  # every ordinary token is chosen at rate 1


@pytest.mark.parametrize("arch", ["bert-mlm", "roberta-mlm"])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=TEXT, picks=st.lists(st.integers(-3, 80), max_size=10), whole_word=st.booleans())
def test_picked_masks_never_land_on_special_tokens(tiny_models, arch, text, picks, whole_word):
    from model.inspect import encode
    from model.load import load_model
    from model.corruption import mask_positions

    assume(text.strip())
    m = load_model(tiny_models[arch])
    enc = encode(m, text)
    masked, truths = mask_positions(text, enc.tokens, picks, m.info.mask_token, whole_word)
    specials = {i for i, t in enumerate(enc.tokens) if t.special}
    chosen = {p for p in picks if 0 <= p < len(enc.tokens)} - specials
    assert len(truths) <= len(chosen) * (len(enc.tokens) if whole_word else 1)
    if not chosen:
        assert masked == text and not truths
    for at in truths:  # every inserted mask sits where the text now says mask
        assert masked[at:at + len(m.info.mask_token)] == m.info.mask_token


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    from model.train.config import TrainConfig
    from model.train.prepare import prepare
    from model.train.toyworld import generate_corpus

    corpus = tmp_path_factory.mktemp("prop-corpus") / "toy.txt"
    corpus.write_text("\n\n".join("\n".join(d) for d in generate_corpus(80, seed=5)), encoding="utf-8")
    out = {}
    for arch, ww in (("bert", False), ("roberta", False), ("albert", True)):
        cfg = TrainConfig(arch=arch, out_dir=str(tmp_path_factory.mktemp(arch)), corpus=str(corpus), preset="tiny",
                          vocab_size=300, whole_word=ww, mlm_probability=0.5, seed=3).resolved()
        out[arch] = (cfg, prepare(cfg))
    return out


@pytest.mark.parametrize("arch", ["bert", "roberta", "albert"])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(step=st.integers(0, 10_000))
def test_training_batches_never_mask_or_insert_special_tokens(prepared, arch, step):
    from model.train.prepare import batch_for_step

    cfg, prep = prepared[arch]
    batch = batch_for_step(prep, cfg, step)
    specials = torch.tensor(prep.tok.all_special_ids)
    chosen = batch["labels"] != -100
    assert chosen.any()
    assert not torch.isin(batch["labels"][chosen], specials).any()  # never a special token to predict
    # where the input shows a special token, it is the original one (never a replacement)
    assert not (chosen & torch.isin(batch["input_ids"], specials) & (batch["input_ids"] != prep.tok.mask_token_id)).any()


# ---------------------------------------------------------------------------------------------------
# Lone surrogates (an API caller can pass them; the CLI refuses them as invalid UTF-8)


@settings(max_examples=200, deadline=None)
@given(text=st.lists(st.characters(codec="utf-8") | st.sampled_from(["\ud800", "\udfff", "\udc80", "\ud83d\ude00"]),
                     max_size=30).map("".join))  # "\ud83d\ude00": a high + low pair, still two lone surrogates
def test_lone_surrogates_are_replaced_one_for_one(text):
    from model.inspect import clean_text

    out = clean_text(text)
    assert len(out) == len(text)
    out.encode("utf-8")  # always encodable now
    for a, b in zip(text, out):
        assert b == a or ("\ud800" <= a <= "\udfff" and b == "\ufffd")


@pytest.mark.parametrize("arch", ["bert-mlm", "gpt2"])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=st.lists(st.sampled_from(["the", " dogs", " ", "\ud83d\ude00", "\ud800", "run", "\u6f22"]), min_size=1, max_size=12))
def test_spans_index_the_callers_string_even_with_surrogates(tiny_models, arch, parts):
    """Surrogates (paired or not) become U+FFFD one for one: spans index the string the caller holds."""
    from model.inspect import encode
    from model.load import load_model

    text = "".join(parts)
    assume(text.strip())
    enc = encode(load_model(tiny_models[arch]), text)
    for t in enc.tokens:
        assert 0 <= t.start <= t.end <= len(text)
    starts = {t.start for t in enc.tokens if not t.special}
    for i in range(len(text)):  # a word after a non-letter starts a token exactly where the caller sees it
        if text.startswith("run", i) and (i == 0 or not text[i - 1].isalpha()) and text[i - 1:i] != " ":
            assert i in starts, (i, text, [(t.text, t.start, t.end) for t in enc.tokens])
