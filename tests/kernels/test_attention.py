"""kernels.attention against direct computation and transformers' eager attention."""
import numpy as np
import pytest
import torch

from kernels.attention import AttentionStore, attention_probs, head_summaries, rollout_step


def test_probs_match_eager_formula_with_padding_and_causal():
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 3, 5, 8, generator=g), torch.randn(2, 3, 5, 8, generator=g)
    pad = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=torch.bool)
    p = attention_probs(q, k, key_padding=pad, causal=True)
    scores = q @ k.transpose(-1, -2) / 8 ** 0.5
    allowed = torch.ones(5, 5, dtype=torch.bool).tril()[None, None] & pad[:, None, None, :]
    ref = torch.softmax(scores.masked_fill(~allowed, float("-inf")), -1)
    assert torch.allclose(p, ref, atol=1e-6)
    assert torch.allclose(p.sum(-1), torch.ones(2, 3, 5))


def test_grouped_query_keys_are_shared():
    q, k = torch.randn(1, 4, 3, 2), torch.randn(1, 2, 3, 2)
    p = attention_probs(q, k)
    assert torch.allclose(p[:, 1], attention_probs(q[:, 1:2], k[:, 0:1])[:, 0])


def test_summaries_by_hand():
    p = torch.tensor([[[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 1.0]]])  # (head, query, key)
    s = head_summaries(p, torch.tensor([True, False, False]))
    assert s["entropy"].item() == pytest.approx(np.log(2) / 3, abs=1e-6)
    assert s["distance"].item() == pytest.approx((0 + 0.5 * 1 + 0) / 3, abs=1e-6)
    assert s["special_share"].item() == pytest.approx((1 + 0.5) / 3, abs=1e-6)


def test_rollout_identity_and_rows_sum_to_one():
    eye = torch.eye(4)[None].repeat(2, 1, 1)
    r = rollout_step(None, eye)
    assert torch.allclose(r, torch.eye(4))
    a = torch.softmax(torch.randn(2, 4, 4), -1)
    r2 = rollout_step(rollout_step(None, a), a)
    assert torch.allclose(r2.sum(-1), torch.ones(4), atol=1e-6)


def test_store_is_lazy_and_compact():
    calls = []
    maps = [torch.softmax(torch.randn(3, 6, 6), -1) for _ in range(4)]

    def fn(i):
        def f(heads=None):
            calls.append(i)
            return maps[i] if heads is None else maps[i][heads]
        return f

    store = AttentionStore([fn(i) for i in range(4)], 3, np.zeros(6, bool), cache_layers=2)
    assert calls == []
    assert store.layer(2).dtype == np.float16 and store.layer(2).shape == (3, 6, 6)
    assert calls == [2]  # cached
    assert np.array_equal(store.head(1, 0), maps[1][0].numpy())
    for i in range(4):
        store.layer(i)
    assert len(store._cache) == 2
    assert store.summaries()["entropy"].shape == (4, 3)
