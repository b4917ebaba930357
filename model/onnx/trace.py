"""Tracing the export's modules to ONNX files with `torch.onnx.export(dynamo=False)` (TorchScript tracing).

Measured here: 0.2-1.2 s per tiny model and 3 s for MiniLM, against ~10 s per model for `dynamo=True`, and the
traced graph ran faster in onnxruntime. Each module is traced on a padded batch (the model graph) or mid-
generation (the decoder), so mask arithmetic is part of the graph; dynamic axes keep batch and lengths free.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import torch

from model.errors import ExportError
from model.onnx.wrappers import DecoderModule, ExportSpec, GraphModule, HeadModule, empty_cache

EXPORTER = "torch.onnx.export(dynamo=False)"
MAX_PROTO_BYTES = 2 * 10**9 - 2**24  # a single ONNX protobuf must stay under 2 GB (no external-data files here)


def trace_graph(graph: GraphModule, batch, spec: ExportSpec, f: Path, opset: int) -> None:
    dynamic = {k: {0: "batch", 1: "seq"} for k in spec.inputs}
    dynamic.update({
        "logits": {0: "batch", 1: "seq"}, "last_hidden_state": {0: "batch", 1: "seq"},
        "attentions": {1: "batch", 3: "seq", 4: "seq"}, "hidden_states": {1: "batch", 2: "seq"}, "pair_logits": {0: "batch"},
    })
    dynamic = {k: v for k, v in dynamic.items() if k in spec.inputs or k in spec.outputs}
    _quiet_export(graph, tuple(batch[k] for k in spec.inputs), f, spec.inputs, spec.outputs, dynamic, opset)


def trace_head(head: HeadModule, batch, f: Path, opset: int) -> None:
    with torch.no_grad():  # not inference_mode: the tracer cannot use inference tensors
        hidden = head.model.base_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    names = ["hidden"] + (["apply_norm"] if head.norm is not None else [])
    args = (hidden,) + ((torch.tensor(True),) if head.norm is not None else ())
    _quiet_export(head, args, f, names, ["logits"], {"hidden": {0: "batch", 1: "seq"}, "logits": {0: "batch", 1: "seq"}}, opset)


def trace_decoder(dec: DecoderModule, ids: torch.Tensor, f: Path, opset: int) -> None:
    """Traced mid-generation (a cache of n - 2 positions, two new tokens), so neither length is special."""
    with torch.no_grad():
        _, keys, values = dec(ids[:, :-2], *[empty_cache(dec.model.config)(ids.shape[0])] * 2)
    dynamic = {"input_ids": {0: "batch", 1: "new"}, "past_keys": {1: "batch", 3: "past"},
               "past_values": {1: "batch", 3: "past"}, "logits": {0: "batch"},
               "present_keys": {1: "batch", 3: "total"}, "present_values": {1: "batch", 3: "total"}}
    _quiet_export(dec, (ids[:, -2:], keys, values), f, ["input_ids", "past_keys", "past_values"],
                  ["logits", "present_keys", "present_values"], dynamic, opset)


def _quiet_export(module, args, f: Path, inputs, outputs, dynamic, opset: int) -> None:
    """The tracer warns about every Python bool it meets (shape checks that are constant here) and about its
    own deprecation; none of that is actionable for a user."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(f), dynamo=False, opset_version=opset, input_names=list(inputs),
                          output_names=list(outputs), dynamic_axes=dynamic,
                          # unfolded, a tied LM head stays one initializer with the embedding (MiniLM: 91 MB, not
                          # 138 MB); onnxruntime folds the transpose when it loads the graph (same speed, measured)
                          do_constant_folding=False)
    if f.stat().st_size > MAX_PROTO_BYTES:
        raise ExportError(f"the exported graph is {f.stat().st_size / 1e9:.1f} GB: over the 2 GB a single ONNX file can hold")
