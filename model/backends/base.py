"""The one interface every backend (torch eager, onnxruntime, our ELMo) implements.

Everything above this layer (`model.inspect`, `model.generate`, the CLI, the app) talks to a `Backend`
and never to an `nn.Module` or an `InferenceSession` directly.

Tensors crossing this interface are torch tensors on the CPU:
    input_ids, attention_mask, token_type_ids: (batch, seq) int64
    logits:        (batch, seq, vocab) float32
    hidden_states: L + 1 tensors (batch, seq, hidden) float32, row 0 = embedding output
    attention:     L callables; `fn(heads=None)` returns (batch, len(heads), query, key) float32
                   probabilities of those heads (all when None); a backend computes them lazily where it
                   can (torch: from captured q/k).
    qk:            L callables or None; `fn(heads=None)` returns (query, key, scale): query and key
                   (batch, len(heads), seq, dim) float32 as the layer computed them (grouped-query key heads
                   repeated so key head h serves query head h), and the float the scores q . k were
                   multiplied by before the mask and softmax. None where a backend only has probabilities
                   (ONNX graphs, the output_attentions fallback) or no attention (ELMo).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Callable

import torch

from model.errors import InputError, Unavailable


@dataclass
class ForwardOutput:
    logits: torch.Tensor | None = None  # (batch, seq, vocab) when the backend has them all at once
    # Or lazily: positions (n,) int64 -> (batch, n, vocab). Lets the torch backend apply the LM head only
    # where needed (a 1024-token BERT input would otherwise hold 125 MB of logits).
    logits_fn: Callable[[torch.Tensor], torch.Tensor] | None = None
    hidden_states: list[torch.Tensor] = field(default_factory=list)  # L + 1 x (batch, seq, hidden)
    attention: list[Callable[..., torch.Tensor]] | None = None  # L x (heads=None) -> (batch, head, query, key)
    # L x (heads=None) -> (query (batch, head, seq, dim), key (batch, head, seq, dim), scale); see above
    qk: list[Callable[..., tuple[torch.Tensor, torch.Tensor, float]]] | None = None
    pair_logits: torch.Tensor | None = None  # (batch, 2) NSP / SOP head
    # ELMo-style models: backward-LM logits, position i predicts token i-1.
    backward_logits: torch.Tensor | None = None  # (batch, seq, vocab)

    @property
    def has_logits(self) -> bool:
        return self.logits is not None or self.logits_fn is not None

    def logits_at(self, positions: torch.Tensor) -> torch.Tensor:
        """(n,) int64 positions -> (batch, n, vocab) float32 logits."""
        if self.logits_fn is not None:
            return self.logits_fn(positions)
        if self.logits is None:
            raise Unavailable("this model has no language-model head")
        return self.logits[:, positions, :]


class Decoder(ABC):
    """Incremental decoding of one batch of equal-length prefixes (no padding), holding a key/value cache.

    Made by `Backend.decoder(input_ids)`; owned by one caller (one generation), never shared: all the
    cache state lives here, none in the backend. Rows may be reordered, duplicated or dropped (beam search).

        dec = backend.decoder(ids)       # (batch, seq) prefix
        dec.logits()                     # (batch, vocab) for the token after the last position
        dec.append(next_ids)             # (batch,) int64: extend every row by one token
        dec.reorder(beam_idx)            # (new_batch,) int64: row i becomes old row beam_idx[i]

    This class keeps the bookkeeping (tokens not yet read, row checks, the length limit); a backend's
    decoder says how its model reads tokens (`_read`), keeps rows (`_select`) and gives logits (`_logits`).
    The model runs lazily, on the next `logits()`, so appending after the last step costs nothing.
    """

    def __init__(self, input_ids: torch.Tensor, max_positions: int | None):
        if input_ids.dim() != 2 or input_ids.shape[1] == 0:
            raise ValueError(f"input_ids must be (batch, seq) with seq >= 1, got {tuple(input_ids.shape)}")
        self._pending: torch.Tensor | None = input_ids.long()  # (batch, n) tokens the model has not read yet
        self._rows = int(input_ids.shape[0])
        self._read_any = False  # the prompt has been read
        self._max_positions = max_positions
        self.length = int(input_ids.shape[1])  # tokens per row so far (prefix + appended)

    @abstractmethod
    def _read(self, ids: torch.Tensor) -> None:
        """Run the model on ids (batch, n), the tokens after those already read, growing the cache and
        keeping what `_logits` needs."""

    @abstractmethod
    def _select(self, idx: torch.Tensor) -> None:
        """Keep rows idx (new_batch,) int64 of the cache and of what `_logits` needs (repeats allowed)."""

    @abstractmethod
    def _logits(self) -> torch.Tensor:
        """(batch, vocab) float32 logits after the last token read."""

    def _run(self) -> None:
        if self._pending is None:
            return
        if self._max_positions is not None and self.length > self._max_positions:
            raise InputError(f"the sequence is {self.length} tokens; the model reads at most {self._max_positions}")
        self._read(self._pending)
        self._pending, self._read_any = None, True

    def logits(self) -> torch.Tensor:
        """(batch, vocab) float32 next-token logits after each row's last token (equal to the recompute
        path's `next_token_logits` of the same rows)."""
        self._run()
        return self._logits()

    def append(self, next_ids: torch.Tensor) -> None:
        """Extend each row by one token: next_ids (batch,) int64."""
        col = torch.as_tensor(next_ids, dtype=torch.long).reshape(-1, 1)  # (batch, 1)
        if col.shape[0] != self._rows:
            raise ValueError(f"append needs one token per row ({self._rows}), got {col.shape[0]}")
        self._pending = col if self._pending is None else torch.cat([self._pending, col], dim=1)
        self.length += 1

    def reorder(self, beam_idx: torch.Tensor) -> None:
        """Select rows: beam_idx (new_batch,) int64 indexes the current rows; repeats allowed."""
        idx = torch.as_tensor(beam_idx, dtype=torch.long).reshape(-1)
        if not self._read_any:
            self._run()  # the prompt once per distinct row, then copy its cache (beam search: 1 -> num_beams)
        if idx.numel() == self._rows and torch.equal(idx, torch.arange(self._rows)):
            return
        if idx.numel() == 0 or int(idx.min()) < 0 or int(idx.max()) >= self._rows:
            raise IndexError(f"beam_idx must index the {self._rows} current rows")
        self._select(idx)
        if self._pending is not None:
            self._pending = self._pending.index_select(0, idx)
        self._rows = int(idx.numel())


class Backend(ABC):
    """A runnable model. Implementations must be safe to call from several threads at once
    (no state is mutated by `forward`)."""

    kind: str = "abstract"  # "torch" | "onnx" | "elmo"
    num_layers: int = 0
    num_heads: int = 0
    vocab_size: int = 0
    max_positions: int | None = None
    has_lm_head: bool = False
    has_pair_head: bool = False
    has_attention: bool = True
    causal: bool = False  # a query attends only to itself and earlier positions (a decoder)
    stops_early: bool = False  # `layer_attention` runs the model only up to the layer asked for

    def qk_unavailable(self) -> str | None:
        """Why `forward` gives no per-layer queries and keys (`ForwardOutput.qk`), or None when it does."""
        return (f"the {self.kind} backend gives attention probabilities only, not the queries and keys they "
                "are computed from")

    @abstractmethod
    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        *,
        attentions: bool = True,
        hidden_states: bool = True,
    ) -> ForwardOutput:
        """One forward pass, no gradients."""

    def layer_attention(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        *,
        layer: int,
    ) -> Callable[..., torch.Tensor] | None:
        """One layer's attention callable, the same as `forward(...).attention[layer]`, running the model no
        further than that layer where the backend can (`stops_early`); this default runs the whole forward.
        None when the forward gives no attention."""
        out = self.forward(input_ids, attention_mask, token_type_ids, attentions=True, hidden_states=False)
        if not out.attention:
            return None
        if not 0 <= layer < len(out.attention):
            raise InputError(f"layer {layer} is out of range: this model has layers 0..{len(out.attention) - 1}")
        return out.attention[layer]

    def lens(self, hidden: torch.Tensor, layer: int) -> torch.Tensor:
        """Logit lens: (batch, seq, hidden) hidden state of `layer` (0 = embeddings) through the
        final norm and LM head -> (batch, seq, vocab) logits."""
        raise NotImplementedError("this model has no language-model head")

    def next_token_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(batch, seq) -> (batch, vocab) logits for the token after the last position.
        Default: recompute the whole prefix; backends with a KV cache may override."""
        out = self.forward(input_ids, attention_mask, attentions=False, hidden_states=False)
        last = torch.tensor([input_ids.shape[1] - 1])
        return out.logits_at(last)[:, 0, :]

    def decoder(self, input_ids: torch.Tensor) -> Decoder | None:
        """A `Decoder` over the (batch, seq) unpadded prefix `input_ids` that reuses past keys and values,
        so each appended token costs one position; None when this backend has no cache (callers then
        recompute the prefix with `next_token_logits` at every step)."""
        return None
