"""kernels.sampling against transformers' logits processors, filter by filter and as a pipeline."""
import doctest

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import GenerationConfig, GPT2Config, GPT2LMHeadModel
from transformers.generation.logits_process import (
    LogitsProcessorList,
    MinPLogitsWarper,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
    TypicalLogitsWarper,
)

from kernels import sampling
from kernels.sampling import SamplingConfig

VOCAB = 50
IDS = torch.tensor([[1, 2, 2, 7], [3, 3, 3, 3], [0, 49, 10, 11]])  # (batch 3, seq 4), repeats included


def _scores(seed: int, kind: str = "normal") -> torch.Tensor:
    """(3, VOCAB) logits of one kind: normal, ties (rounded: many exact ties), extreme (+-1e4 magnitudes:
    softmax saturates to exact 0 and 1), masked (a third already at -inf), flat (all equal)."""
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(3, VOCAB, generator=g) * 3
    if kind == "ties":
        s = s.round()
    elif kind == "extreme":
        s = s * 3000
    elif kind == "masked":
        s[torch.rand(3, VOCAB, generator=g) < 0.33] = -float("inf")
    elif kind == "flat":
        s = torch.full_like(s, 0.25)
    return s


KINDS = ["normal", "ties", "extreme", "masked", "flat"]

CASES = [
    ("top_k=1", lambda s: sampling.top_k(s, 1), TopKLogitsWarper(1)),
    ("top_k=5", lambda s: sampling.top_k(s, 5), TopKLogitsWarper(5)),
    ("top_k=50", lambda s: sampling.top_k(s, 50), TopKLogitsWarper(50)),
    ("top_k=1,keep3", lambda s: sampling.top_k(s, 1, 3), TopKLogitsWarper(1, min_tokens_to_keep=3)),
    ("top_p=0.1", lambda s: sampling.top_p(s, 0.1), TopPLogitsWarper(0.1)),
    ("top_p=0.9", lambda s: sampling.top_p(s, 0.9), TopPLogitsWarper(0.9)),
    ("top_p=1e-6,keep2", lambda s: sampling.top_p(s, 1e-6, 2), TopPLogitsWarper(1e-6, min_tokens_to_keep=2)),
    ("min_p=0.05", lambda s: sampling.min_p(s, 0.05), MinPLogitsWarper(0.05)),
    ("min_p=0.5", lambda s: sampling.min_p(s, 0.5), MinPLogitsWarper(0.5)),
    ("min_p=0.99,keep4", lambda s: sampling.min_p(s, 0.99, 4), MinPLogitsWarper(0.99, min_tokens_to_keep=4)),
    ("typical=0.2", lambda s: sampling.typical_p(s, 0.2), TypicalLogitsWarper(0.2)),
    ("typical=0.95", lambda s: sampling.typical_p(s, 0.95), TypicalLogitsWarper(0.95)),
    ("typical=0.01,keep3", lambda s: sampling.typical_p(s, 0.01, 3), TypicalLogitsWarper(0.01, min_tokens_to_keep=3)),
    ("temperature=0.7", lambda s: sampling.temperature(s, 0.7), TemperatureLogitsWarper(0.7)),
    ("temperature=5", lambda s: sampling.temperature(s, 5.0), TemperatureLogitsWarper(5.0)),
    ("rep=1.3", lambda s: sampling.repetition_penalty(s, IDS, 1.3), RepetitionPenaltyLogitsProcessor(1.3)),
    ("rep=0.8", lambda s: sampling.repetition_penalty(s, IDS, 0.8), RepetitionPenaltyLogitsProcessor(0.8)),
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("name,ours,theirs", CASES, ids=[c[0] for c in CASES])
def test_each_filter_equals_transformers(name, ours, theirs, seed, kind):
    s = _scores(seed, kind)
    got, want = ours(s.clone()), theirs(IDS, s.clone())
    assert torch.equal(got, want), name
    assert torch.isfinite(got).sum(-1).min() >= 1  # never removes everything


@pytest.fixture(scope="module")
def hf_model():
    """Only to ask transformers which processors generate() builds, in which order."""
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=VOCAB, n_embd=16, n_layer=1, n_head=2, n_positions=16, bos_token_id=0, eos_token_id=0)
    return GPT2LMHeadModel(cfg).eval()


SETTINGS = [
    dict(temperature=0.7, top_k=10),
    dict(temperature=1.3, top_p=0.8),
    dict(top_k=20, top_p=0.5, min_p=0.1),
    dict(temperature=0.9, typical_p=0.7, repetition_penalty=1.2),
    dict(temperature=2.0, top_k=3, top_p=0.95, min_p=0.02, typical_p=0.9, repetition_penalty=1.5),
    dict(temperature=0.3, min_p=0.3, typical_p=0.5, repetition_penalty=0.7),
    dict(do_sample=False, temperature=0.5, top_k=3, repetition_penalty=1.4),  # greedy: warpers are skipped
    dict(),  # nothing active
]


def _transformers_processors(model, cfg: SamplingConfig) -> LogitsProcessorList:
    """The list `model.generate()` itself builds for these settings (transformers 5 GenerationConfig
    defaults are None, so unset means off)."""
    gc = GenerationConfig(do_sample=cfg.do_sample, temperature=cfg.temperature, top_k=cfg.top_k, top_p=cfg.top_p,
                          typical_p=cfg.typical_p, min_p=cfg.min_p or None, repetition_penalty=cfg.repetition_penalty)
    return model._get_logits_processor(
        generation_config=gc, input_ids_seq_length=IDS.shape[1], encoder_input_ids=IDS, prefix_allowed_tokens_fn=None,
        logits_processor=None, device="cpu", model_kwargs={"attention_mask": torch.ones_like(IDS)})


@pytest.mark.parametrize("kind", ["normal", "ties", "extreme"])
@pytest.mark.parametrize("kw", SETTINGS, ids=[str(k) for k in SETTINGS])
def test_pipeline_equals_generate_processors(hf_model, kw, kind):
    cfg = SamplingConfig(**kw)
    procs = _transformers_processors(hf_model, cfg)
    s = _scores(7, kind)
    want = procs(IDS, s.clone())
    final, stages = sampling.filter_trace(s.clone(), IDS, cfg)
    assert torch.equal(final, want)
    assert torch.equal(sampling.apply(s.clone(), IDS, cfg), want)
    # one stage per processor, named after it, in transformers' order
    names = {RepetitionPenaltyLogitsProcessor: "repetition_penalty", TemperatureLogitsWarper: "temperature",
             TopKLogitsWarper: "top_k", TopPLogitsWarper: "top_p", MinPLogitsWarper: "min_p",
             TypicalLogitsWarper: "typical_p"}
    assert [st_.name for st_ in stages] == ["input"] + [names[type(p)] for p in procs]
    # every stage: the full vocabulary, a valid distribution, zero exactly where removed
    for st_ in stages:
        assert st_.probs.shape == s.shape and (st_.probs >= 0).all()
        assert torch.allclose(st_.probs.sum(-1), torch.ones(3))
        assert (st_.probs[~torch.isfinite(st_.scores)] == 0).all()
        assert torch.equal(st_.kept, torch.isfinite(st_.scores).sum(-1))
    # filters only ever remove tokens
    for a, b in zip(stages, stages[1:]):
        assert (b.kept <= a.kept).all()


def test_single_row_trace_equals_batched():
    cfg = SamplingConfig(temperature=0.8, top_k=12, top_p=0.9, repetition_penalty=1.3)
    s = _scores(3)
    final_b, stages_b = sampling.filter_trace(s, IDS, cfg)
    for row in range(3):
        final, stages = sampling.filter_trace(s[row], IDS[row], cfg)
        assert final.shape == (VOCAB,) and torch.equal(final, final_b[row])
        for one, batch in zip(stages, stages_b):
            assert one.probs.shape == (VOCAB,) and torch.equal(one.probs, batch.probs[row])
            assert one.kept.shape == () and int(one.kept) == int(batch.kept[row])


def test_greedy_pick_is_argmax_and_ignores_rng():
    s = _scores(4)
    cfg = SamplingConfig(do_sample=False)
    assert torch.equal(sampling.pick(s, cfg), s.argmax(-1))
    assert int(sampling.pick(s[1], cfg)) == int(s[1].argmax())


@pytest.mark.parametrize("seed", [0, 5, 123])
def test_sampling_pick_generator_equals_global_seed(seed):
    """transformers' _sample calls torch.multinomial on the global RNG; our private generator, seeded the
    same, must draw the same tokens (and leave the global RNG alone)."""
    cfg = SamplingConfig(temperature=1.5)
    s = sampling.apply(_scores(seed), IDS, cfg)
    torch.manual_seed(seed)
    want = [torch.multinomial(torch.softmax(s, -1), num_samples=1).squeeze(1) for _ in range(10)]
    torch.manual_seed(seed)
    first = torch.rand(1)
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    got = [sampling.pick(s, cfg, g) for _ in range(10)]
    assert all(torch.equal(a, b) for a, b in zip(got, want))
    assert torch.equal(torch.rand(1), first)  # the draws did not advance the global RNG


def test_sampling_pick_never_picks_a_removed_token():
    cfg = SamplingConfig(top_k=3)
    s = sampling.apply(_scores(9, "ties"), IDS, cfg)
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        t = sampling.pick(s, cfg, g)
        assert torch.isfinite(s.gather(1, t[:, None])).all()


@pytest.mark.parametrize("kw,needle", [
    (dict(temperature=0), "temperature"), (dict(temperature=-1), "temperature"), (dict(temperature=1e3), "temperature"),
    (dict(temperature=float("nan")), "temperature"),
    (dict(top_p=0), "top_p"), (dict(top_p=1.5), "top_p"), (dict(top_p=float("nan")), "top_p"),
    (dict(top_k=-1), "top_k"), (dict(top_k=51), "top_k"), (dict(top_k=2.5), "top_k"),
    (dict(min_p=1), "min_p"), (dict(min_p=-0.1), "min_p"),
    (dict(typical_p=0), "typical_p"), (dict(typical_p=1.01), "typical_p"),
    (dict(repetition_penalty=0), "repetition_penalty"), (dict(repetition_penalty=11), "repetition_penalty"),
    (dict(seed=-1), "seed"), (dict(seed=2**64), "seed"), (dict(seed="7"), "seed"),
])
def test_out_of_range_settings_are_named(kw, needle):
    with pytest.raises(ValueError, match=f"^{needle}"):
        SamplingConfig(**kw).validate(VOCAB)


def test_greedy_allows_temperature_zero_and_edges():
    SamplingConfig(do_sample=False, temperature=0).validate(VOCAB)  # ignored when greedy, as in transformers
    SamplingConfig(top_k=VOCAB, top_p=1.0, typical_p=1.0, min_p=0.0, seed=0).validate(VOCAB)


def test_docstring_examples():
    assert doctest.testmod(sampling, raise_on_error=True).attempted >= 4


@settings(max_examples=150, deadline=None)
@given(
    logits=st.lists(st.floats(-20, 20, allow_nan=False), min_size=2, max_size=40),
    p=st.floats(0.01, 1.0),
    k=st.integers(1, 40),
)
def test_filtered_distributions_are_valid(logits, p, k):
    s = torch.tensor([logits])
    for out in (sampling.top_p(s, p), sampling.top_k(s, k), sampling.min_p(s, min(p, 0.99)),
                sampling.typical_p(s, min(p, 0.99))):
        probs = torch.softmax(out, -1)
        assert (probs >= 0).all() and abs(probs.sum().item() - 1) < 1e-5
        assert torch.isfinite(out).sum() >= 1
    # top-k keeps exactly k unless ties at the k-th score
    kept = torch.isfinite(sampling.top_k(s, k)).sum().item()
    kk = min(k, s.shape[1])
    kth = torch.topk(s, kk)[0][0, -1]
    assert kept == (s >= kth).sum().item() and kept >= kk
    # top-p keeps the most probable tokens, and no fewer than reach mass p
    probs = torch.softmax(s, -1)[0]
    keep = torch.isfinite(sampling.top_p(s, p))[0]
    assert probs[keep].sum().item() >= p - 1e-5
    if (~keep).any():
        assert probs[keep].min() >= probs[~keep].max()
