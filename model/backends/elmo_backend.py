"""ELMo behind the common Backend interface: forward-LM logits as the causal logits, backward-LM logits
beside them, each biLSTM layer as a hidden state, and no attention (the app says so). Generation runs the
forward LM incrementally (`decoder`): its LSTM states are the whole cache."""
from __future__ import annotations

from pathlib import Path

import torch
from torch.nn import functional as F

from model.backends.base import Backend, Decoder, ForwardOutput
from model.train.elmo import ElmoLM


class ElmoBackend(Backend):
    kind = "elmo"
    has_attention = False
    has_lm_head = True

    def __init__(self, module: ElmoLM):
        self.module = module.eval()
        cfg = module.config
        self.num_layers = cfg.num_layers
        self.num_heads = 0
        self.vocab_size = cfg.vocab_size
        self.max_positions = cfg.max_positions
        self.pair_kind = None

    @torch.inference_mode()
    def forward(self, input_ids, attention_mask=None, token_type_ids=None, *, attentions=True, hidden_states=True):
        out = self.module(input_ids, attention_mask)
        return ForwardOutput(logits=out.forward_logits.float(), hidden_states=out.layers, attention=None,
                             backward_logits=out.backward_logits.float())


    def decoder(self, input_ids: torch.Tensor) -> Decoder:
        return _ElmoDecoder(self.module, input_ids)


class _ElmoDecoder(Decoder):
    """The forward LM one token at a time: each layer's LSTM state (h, c), each (1, batch, hidden), is all
    a left-to-right reader keeps, so an appended token costs one LSTM step per layer. The same function as
    `ElmoLM.forward`'s forward stack on an unpadded row (eval mode: no dropout)."""

    def __init__(self, module: ElmoLM, input_ids: torch.Tensor):
        if input_ids.dim() != 2 or input_ids.shape[1] == 0:
            raise ValueError(f"input_ids must be (batch, seq) with seq >= 1, got {tuple(input_ids.shape)}")
        self._m = module
        with torch.inference_mode():
            self._table = module.token_table()  # (vocab, embed): input vectors and the tied softmax, once
        self._states: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * module.config.num_layers
        self._pending: torch.Tensor | None = input_ids.long()  # (batch, n) tokens not yet read
        self._last: torch.Tensor | None = None  # (batch, embed) top layer's output at the last token read
        self.length = int(input_ids.shape[1])

    @torch.inference_mode()
    def _run(self) -> None:
        if self._pending is None:
            return
        limit = self._m.config.max_positions  # what inspection and generate() hold ELMo to, kept here too
        if self.length > limit:
            raise ValueError(f"the sequence is {self.length} tokens; the model reads at most {limit}")
        stack = self._m.fwd
        x = F.embedding(self._pending, self._table)  # (batch, n, embed)
        for i, (lstm, proj) in enumerate(zip(stack.lstms, stack.projs)):
            y, self._states[i] = lstm(x, self._states[i])  # (batch, n, hidden)
            h = proj(y)  # (batch, n, embed)
            x = h if i == 0 else x + h  # residual above the first layer, as in _Stack
        self._last, self._pending = x[:, -1], None

    def logits(self) -> torch.Tensor:
        self._run()
        with torch.inference_mode():
            return (self._last @ self._table.T).float()  # (batch, vocab): the tied softmax

    def append(self, next_ids: torch.Tensor) -> None:
        col = torch.as_tensor(next_ids, dtype=torch.long).reshape(-1, 1)  # (batch, 1)
        batch = self._pending.shape[0] if self._pending is not None else self._last.shape[0]
        if col.shape[0] != batch:
            raise ValueError(f"append needs one token per row ({batch}), got {col.shape[0]}")
        self._pending = col if self._pending is None else torch.cat([self._pending, col], dim=1)
        self.length += 1

    def reorder(self, beam_idx: torch.Tensor) -> None:
        idx = torch.as_tensor(beam_idx, dtype=torch.long).reshape(-1)
        if self._last is None:
            self._run()  # the prompt once per distinct row, then copy its states (beam search: 1 -> num_beams)
        batch = self._last.shape[0]
        if idx.numel() == batch and torch.equal(idx, torch.arange(batch)):
            return
        if idx.numel() == 0 or int(idx.min()) < 0 or int(idx.max()) >= batch:
            raise IndexError(f"beam_idx must index the {batch} current rows")
        self._states = [(h.index_select(1, idx), c.index_select(1, idx)) for h, c in self._states]
        self._last = self._last.index_select(0, idx)
        if self._pending is not None:
            self._pending = self._pending.index_select(0, idx)


def load_elmo(path: str | Path):
    """-> (ElmoBackend, tokenizer)."""
    from transformers import PreTrainedTokenizerFast

    path = Path(path)
    module = ElmoLM.from_pretrained(path)
    # not AutoTokenizer: it would read config.json and warn about the model type transformers does not know
    tok = PreTrainedTokenizerFast.from_pretrained(str(path), local_files_only=True)
    if len(tok) > module.config.vocab_size:
        raise ValueError(f"tokenizer/model mismatch in {path}: {len(tok)} tokens, {module.config.vocab_size} embeddings")
    return ElmoBackend(module), tok
