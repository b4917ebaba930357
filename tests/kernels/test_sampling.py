"""kernels.sampling against transformers' logits processors, filter by filter and as a pipeline."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
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


def _scores(seed, batch=3, vocab=50, ties=False):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(batch, vocab, generator=g) * 3
    if ties:
        s = s.round()  # many exact ties
    return s


IDS = torch.tensor([[1, 2, 2, 7], [3, 3, 3, 3], [0, 49, 10, 11]])

CASES = [
    ("top_k", 1, lambda s: sampling.top_k(s, 1), TopKLogitsWarper(1)),
    ("top_k", 5, lambda s: sampling.top_k(s, 5), TopKLogitsWarper(5)),
    ("top_k", 50, lambda s: sampling.top_k(s, 50), TopKLogitsWarper(50)),
    ("top_p", 0.1, lambda s: sampling.top_p(s, 0.1), TopPLogitsWarper(0.1)),
    ("top_p", 0.9, lambda s: sampling.top_p(s, 0.9), TopPLogitsWarper(0.9)),
    ("min_p", 0.05, lambda s: sampling.min_p(s, 0.05), MinPLogitsWarper(0.05)),
    ("min_p", 0.5, lambda s: sampling.min_p(s, 0.5), MinPLogitsWarper(0.5)),
    ("typical", 0.2, lambda s: sampling.typical_p(s, 0.2), TypicalLogitsWarper(0.2)),
    ("typical", 0.95, lambda s: sampling.typical_p(s, 0.95), TypicalLogitsWarper(0.95)),
    ("temperature", 0.7, lambda s: sampling.temperature(s, 0.7), TemperatureLogitsWarper(0.7)),
    ("rep", 1.3, lambda s: sampling.repetition_penalty(s, IDS, 1.3), RepetitionPenaltyLogitsProcessor(1.3)),
    ("rep", 0.8, lambda s: sampling.repetition_penalty(s, IDS, 0.8), RepetitionPenaltyLogitsProcessor(0.8)),
]


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name,value,ours,theirs", CASES, ids=[f"{c[0]}={c[1]}" for c in CASES])
def test_each_filter_equals_transformers(name, value, ours, theirs, seed, ties):
    s = _scores(seed, ties=ties)
    assert torch.equal(ours(s.clone()), theirs(IDS, s.clone()))


SETTINGS = [
    dict(temperature=0.7, top_k=10),
    dict(temperature=1.3, top_p=0.8),
    dict(top_k=20, top_p=0.5, min_p=0.1),
    dict(temperature=0.9, typical_p=0.7, repetition_penalty=1.2),
    dict(temperature=2.0, top_k=3, top_p=0.95, min_p=0.02, typical_p=0.9, repetition_penalty=1.5),
]


@pytest.mark.parametrize("kw", SETTINGS)
def test_pipeline_equals_transformers_order(kw):
    cfg = SamplingConfig(**kw)
    procs = []
    if cfg.repetition_penalty != 1:
        procs.append(RepetitionPenaltyLogitsProcessor(cfg.repetition_penalty))
    if cfg.temperature != 1:
        procs.append(TemperatureLogitsWarper(cfg.temperature))
    if cfg.top_k:
        procs.append(TopKLogitsWarper(cfg.top_k))
    if cfg.top_p < 1:
        procs.append(TopPLogitsWarper(cfg.top_p))
    if cfg.min_p > 0:
        procs.append(MinPLogitsWarper(cfg.min_p))
    if cfg.typical_p < 1:
        procs.append(TypicalLogitsWarper(cfg.typical_p))
    s = _scores(7)
    want = LogitsProcessorList(procs)(IDS, s.clone())
    final, stages = sampling.filter_trace(s.clone(), IDS, cfg)
    assert torch.equal(final, want)
    assert stages[0].name == "input" and len(stages) == len(procs) + 1
    for st_ in stages:
        p = st_.probs()
        assert p.shape == s.shape and (p >= 0).all()
        assert torch.allclose(p.sum(-1), torch.ones(3))


def test_greedy_skips_warpers():
    cfg = SamplingConfig(do_sample=False, temperature=0.1, top_k=2, repetition_penalty=1.2)
    names = [n for n, _, _ in sampling.pipeline(cfg)]
    assert names == ["repetition_penalty"]


@pytest.mark.parametrize("kw,needle", [
    (dict(temperature=0), "temperature"), (dict(temperature=-1), "temperature"),
    (dict(top_p=0), "top_p"), (dict(top_p=1.5), "top_p"), (dict(top_k=-1), "top_k"), (dict(top_k=51), "top_k"),
    (dict(min_p=1), "min_p"), (dict(typical_p=0), "typical_p"), (dict(repetition_penalty=0), "repetition_penalty"),
])
def test_out_of_range_settings_are_named(kw, needle):
    with pytest.raises(ValueError, match=needle):
        SamplingConfig(**kw).validate(50)


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
    # top-p keeps the smallest prefix (by probability) whose mass reaches p
    probs = torch.softmax(s, -1)[0]
    keep = torch.isfinite(sampling.top_p(s, p))[0]
    assert probs[keep].sum().item() >= p - 1e-5
    if keep.sum() > 1:
        smallest = probs[keep].min()
        assert probs[keep].sum().item() - smallest.item() < p + 1e-5 or (probs[keep] == smallest).sum() > 1
