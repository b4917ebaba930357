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
    `ElmoLM.forward`'s forward stack on an unpadded row (eval mode: no dropout). The length limit is the
    one inspection and generate() hold ELMo to (LSTMs have no position table)."""

    def __init__(self, module: ElmoLM, input_ids: torch.Tensor):
        super().__init__(input_ids, module.config.max_positions)
        self._m = module
        with torch.inference_mode():
            self._table = module.token_table()  # (vocab, embed): input vectors and the tied softmax, once
        self._states: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * module.config.num_layers
        self._last: torch.Tensor | None = None  # (batch, embed) top layer's output at the last token read

    @torch.inference_mode()
    def _read(self, ids: torch.Tensor) -> None:
        stack = self._m.fwd
        x = F.embedding(ids, self._table)  # (batch, n, embed)
        for i, (lstm, proj) in enumerate(zip(stack.lstms, stack.projs)):
            y, self._states[i] = lstm(x, self._states[i])  # (batch, n, hidden)
            h = proj(y)  # (batch, n, embed)
            x = h if i == 0 else x + h  # residual above the first layer, as in _Stack
        self._last = x[:, -1]

    @torch.inference_mode()
    def _logits(self) -> torch.Tensor:
        return (self._last @ self._table.T).float()  # (batch, vocab): the tied softmax

    def _select(self, idx: torch.Tensor) -> None:
        self._states = [(h.index_select(1, idx), c.index_select(1, idx)) for h, c in self._states]
        self._last = self._last.index_select(0, idx)


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
