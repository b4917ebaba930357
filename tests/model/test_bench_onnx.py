"""The ONNX latency bench's ceiling: its FLOP count must be the encoder's real one (checked against torch's
own FLOP counter on a transformers BertModel), else the "best possible speedup" line it prints means nothing."""
from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import BertConfig, BertModel

from bench.onnx_latency import matmul_gflops, encoder_flops


@pytest.mark.parametrize("n, layers, hidden, heads", [(16, 2, 64, 4), (37, 3, 96, 6)])
def test_encoder_flops_matches_torch_flop_counter(n, layers, hidden, heads):
    cfg = BertConfig(vocab_size=100, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                     intermediate_size=4 * hidden, max_position_embeddings=64)
    cfg._attn_implementation = "eager"  # bmm ops the counter sees (it skips CPU SDPA)
    model = BertModel(cfg, add_pooling_layer=False).eval()
    ids = torch.randint(0, 100, (1, n))
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(input_ids=ids)
    assert counter.get_total_flops() == encoder_flops(n, layers, hidden, 4 * hidden)


def test_matmul_rates_are_measured_for_both_runtimes():
    rates = matmul_gflops(repeat=1, m=32, k=64, n=128)
    assert set(rates) == {"torch", "onnx"}
    assert all(v > 0 for v in rates.values())
