"""ELMo behind the common Backend interface: forward-LM logits as the causal logits, backward-LM logits
beside them, each biLSTM layer as a hidden state, and no attention (the app says so)."""
from __future__ import annotations

from pathlib import Path

import torch

from model.backends.base import Backend, ForwardOutput
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
