"""The torch modules an export traces: a transformers model as functions of plain tensors.

    GraphModule    FILE.onnx          (input_ids, attention_mask[, token_type_ids]) -> logits or last_hidden_state,
                                      attentions, hidden_states[, pair_logits]
    HeadModule     FILE.head.onnx     hidden [+ apply_norm] -> logits (the LM head alone, for the logit lens)
    DecoderModule  FILE.decoder.onnx  generation with a key/value cache (causal language models)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from model.capabilities import PAIR_KINDS


@dataclass(frozen=True)
class ExportSpec:
    """Which inputs and outputs the graph of one architecture has."""

    architecture: str
    model_type: str
    task: str  # masked-lm | pretraining | causal-lm | encoder
    pair_kind: str | None  # nsp | sop | None
    causal: bool
    segments: bool  # token_type_ids is an input (BERT, ALBERT)
    attentions: bool = True

    @property
    def inputs(self) -> list[str]:
        return ["input_ids", "attention_mask"] + (["token_type_ids"] if self.segments else [])

    @property
    def outputs(self) -> list[str]:
        names = ["last_hidden_state" if self.task == "encoder" else "logits"]
        names += ["attentions"] if self.attentions else []
        names += ["hidden_states"]
        return names + (["pair_logits"] if self.pair_kind else [])

    @property
    def has_head(self) -> bool:
        return self.task != "encoder"


def spec_for(architecture: str, model_type: str, task: str, attentions: bool = True) -> ExportSpec:
    """The spec of `architecture`, whose task model.families chose from transformers' Auto mappings."""
    pair_kind = PAIR_KINDS.get(architecture) if task == "pretraining" else None
    causal = task == "causal-lm" or architecture == "GPT2Model"
    return ExportSpec(architecture, model_type, task, pair_kind, causal, model_type in ("bert", "albert"), attentions)


class GraphModule(nn.Module):
    """The exported graph: a transformers model whose forward returns plain tensors.

    (input_ids, attention_mask[, token_type_ids]) -> (logits | last_hidden_state, [attentions],
    hidden_states, [pair_logits]) with attentions stacked (layer, batch, head, query, key) and hidden
    states stacked (layer + 1, batch, seq, hidden).
    """

    def __init__(self, model: nn.Module, spec: ExportSpec):
        super().__init__()
        self.model = model
        self.spec = spec

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        kw: dict[str, Any] = {}
        if token_type_ids is not None:
            kw["token_type_ids"] = token_type_ids
        if self.spec.causal:
            kw["use_cache"] = False  # a cache object is not a tensor: it cannot leave the graph
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, output_attentions=self.spec.attentions,
                         output_hidden_states=True, return_dict=True, **kw)
        if self.spec.task == "encoder":
            first = out.last_hidden_state  # (batch, seq, hidden)
        else:
            first = out.logits if getattr(out, "logits", None) is not None else out.prediction_logits  # (batch, seq, vocab)
        result = [first]
        if self.spec.attentions:
            result.append(torch.stack(out.attentions))  # (layer, batch, head, query, key)
        result.append(torch.stack(out.hidden_states))  # (layer + 1, batch, seq, hidden)
        if self.spec.pair_kind == "nsp":
            result.append(out.seq_relationship_logits)  # (batch, 2)
        elif self.spec.pair_kind == "sop":
            result.append(out.sop_logits)  # (batch, 2)
        return tuple(result)


class HeadModule(nn.Module):
    """The LM head alone, for the logit lens: hidden (batch, seq, hidden) -> logits (batch, seq, vocab).

    `head(model, hidden)` and `norm` are the torch backend's, checked against the model's own logits at load.
    Models whose lens needs the final norm first (pre-LN: GPT-2's ln_f, Llama's norm, already applied to the
    last hidden state) take `apply_norm`, a bool scalar: True for intermediate layers, False for the last one."""

    def __init__(self, model: nn.Module, head: Callable[[nn.Module, torch.Tensor], torch.Tensor], norm: nn.Module | None):
        super().__init__()
        self.model = model
        self.head = head
        self.norm = norm

    def forward(self, hidden, apply_norm=None):
        if self.norm is not None:
            hidden = torch.where(apply_norm, self.norm(hidden), hidden)  # (batch, seq, hidden)
        return self.head(self.model, hidden)  # (batch, seq, vocab)


def position_offset(model: nn.Module) -> int:
    """Positions a model never gives a token: RoBERTa-style embeddings (RoBERTa, XLM-RoBERTa) start after
    their padding index."""
    emb = getattr(model.base_model, "embeddings", None)
    pad = getattr(emb, "padding_idx", None)
    return pad + 1 if hasattr(emb, "create_position_ids_from_input_ids") and isinstance(pad, int) else 0


def cache_shape(config) -> tuple[int, int, int]:
    """(layers, key/value heads, head dim) of a causal LM's key/value cache."""
    heads = int(config.num_attention_heads)
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)  # fewer: grouped-query attention
    dim = int(getattr(config, "head_dim", None) or config.hidden_size // heads)
    return int(config.num_hidden_layers), kv_heads, dim


def empty_cache(config) -> Callable[[int], torch.Tensor]:
    """batch -> an empty cache tensor (layer, batch, kv_head, 0, dim)."""
    layers, kv_heads, dim = cache_shape(config)
    return lambda batch: torch.zeros(layers, batch, kv_heads, 0, dim)


class DecoderModule(nn.Module):
    """Generation with a key/value cache, as a function of plain tensors (FILE.decoder.onnx):

        (input_ids (batch, new), past_keys, past_values (layer, batch, kv_head, past, dim))
        -> (logits (batch, vocab) after the last new token, present_keys, present_values
            (layer, batch, kv_head, past + new, dim))

    Generation never pads its rows, so positions continue from `past`; they are computed from the input
    shapes inside the graph (a traced Python int would freeze them), so one graph serves the prompt
    (past = 0) and every later step. The cache goes in and out as stacked tensors; inside, the model gets
    transformers' own DynamicCache with every layer keeping all its positions, and builds its own masks from
    it (causal, and the sliding window of the layers that have one)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.layers = cache_shape(model.config)[0]

    def forward(self, input_ids, past_keys, past_values):
        from transformers import DynamicCache

        cache = DynamicCache()
        for layer in range(self.layers):
            cache.update(past_keys[layer], past_values[layer], layer)
        batch, new, past = input_ids.shape[0], input_ids.shape[1], past_keys.shape[3]
        positions = torch.arange(new) + past  # (new,)
        out = self.model(input_ids=input_ids, past_key_values=cache, use_cache=True,
                         position_ids=positions[None].expand(batch, -1), logits_to_keep=1, return_dict=True)
        layers = out.past_key_values.layers
        return (out.logits[:, -1],  # (batch, vocab)
                torch.stack([l.keys for l in layers]),  # (layer, batch, kv_head, past + new, dim)
                torch.stack([l.values for l in layers]))
