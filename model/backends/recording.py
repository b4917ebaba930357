"""The torch backend's attention hook: an `AttentionInterface` implementation ("lmscope") that records each
layer's query, key, mask and scale during a forward pass and computes the layer's output with SDPA.

A forward pass turns recording on by setting `RECORDER` to a `Recording` for its duration (a ContextVar, so
concurrent passes in different threads never see each other's tensors). A recording may also end the pass
early: with `stop_after=L` the hook raises `StopForward` as soon as layer L is recorded, before that layer
computes anything more, so one layer's maps cost the layers up to it and nothing after
(`TorchBackend.layer_attention`).
"""
from __future__ import annotations

import contextvars
import ctypes
import sys
from dataclasses import dataclass

from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, eager_mask

IMPLEMENTATION = "lmscope"


@dataclass
class Recording:
    """What one forward pass records. layers: (query, key, additive mask or None, scale, causal) per layer.
    unpadded: every position is a real token, so the mask is all zeros (bidirectional) or purely causal and
    SDPA can run its fused kernels without materialising an N x N mask per layer.
    stop_after: end the pass (`StopForward`) once this layer (0-based) is recorded; None: run to the end."""

    layers: list | None
    unpadded: bool
    stop_after: int | None = None


class StopForward(BaseException):
    """Raised by the hook once `Recording.stop_after`'s layer is recorded; caught by whoever set the recording.
    A BaseException, so no `except Exception` in modeling code between the hook and the caller swallows it."""


RECORDER: contextvars.ContextVar[Recording | None] = contextvars.ContextVar("lmscope_attention_recorder", default=None)


def recording_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """AttentionInterface implementation: record Q/K, compute the output with SDPA.

    query: (batch, head, query, dim); key, value: (batch, kv_head, key, dim);
    attention_mask: additive float mask broadcastable to (batch, head, query, key), or None.
    """
    rec = RECORDER.get()
    windowed = kwargs.get("sliding_window") is not None or getattr(module, "sliding_window", None) is not None
    if rec is not None and rec.unpadded and not windowed:
        attention_mask = None  # SDPA then applies `module.is_causal` itself, without an N x N mask
    if rec is not None and rec.layers is not None and kwargs.get("softcap") is None:
        # (a soft-capped layer is not recorded: the probe then falls back to eager attention)
        causal = attention_mask is None and bool(getattr(module, "is_causal", False))
        rec.layers.append((query.detach(), key.detach(), attention_mask, scaling, causal))
        if rec.stop_after is not None and len(rec.layers) > rec.stop_after:
            raise StopForward
    kwargs.pop("output_attentions", None)
    return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)


def _pin_mmap_threshold() -> None:
    """glibc raises its mmap threshold after a large block is freed, so later N x N buffers come from the
    heap and stay resident after they are freed; at 1024 tokens that doubled the peak memory of an
    inspection. Pinning the threshold at 2 MiB returns every large tensor (a head's N x N map at 1024 tokens
    is 4 MiB) to the OS when it is freed. Not lower: each block above it is mapped and faulted in afresh when
    allocated, and at 1 MiB a Qwen2-0.5B-sized model's hidden-size activations (1.8 MB at 512 tokens, several
    per layer) made inspection ~0.3 s slower (bench.families); at 4 MiB the 1024-token figure of
    bench.engine's memory row grew by a third."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").mallopt(-3, 2 << 20)  # M_MMAP_THRESHOLD
        except (OSError, AttributeError):
            pass


_pin_mmap_threshold()
AttentionInterface.register(IMPLEMENTATION, recording_attention)
# Give our implementation eager-style masks: a materialised additive float mask, never a skipped one,
# so the recorded mask is exactly what eager attention adds to the scores.
AttentionMaskInterface.register(IMPLEMENTATION, eager_mask)
