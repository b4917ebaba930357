"""fp16 exports: weights stored as float16 and cast to float32 inside the graph (ONNX Cast nodes), so
onnxruntime computes in float32 and the file is about half the size.

The graph must then equal, within parity.TOLERANCE, torch running the same fp16-rounded weights; its drift
from the original float32 model is measured too and must stay under FP16_DRIFT (else the export is refused).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

# fp16 weights vs the original float32 model: attention probabilities and hidden states move by the weight
# rounding (2^-11 relative per weight); beyond these the maps or predictions would visibly differ.
FP16_DRIFT = {"attentions": 1e-2, "logits": 5e-2, "hidden_states": 5e-2, "pair_logits": 5e-2}
FP16_MIN_ELEMENTS = 1024  # only weight matrices and vectors go to fp16; small constants stay exact float32


def round_weights_to_fp16(model: nn.Module) -> None:
    """Round every float32 parameter to the nearest float16 value (kept as float32), in place."""
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())


def store_weights_fp16(f: Path) -> None:
    """Store large float32 initializers that are exactly float16 values as float16, each behind a Cast back to
    float32, so the graph computes exactly what it did and the file is about half the size."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    m = onnx.load(str(f))
    casts, kept = [], []
    for init in m.graph.initializer:
        if init.data_type == TensorProto.FLOAT and int(np.prod(init.dims)) >= FP16_MIN_ELEMENTS:
            arr = numpy_helper.to_array(init)
            half = arr.astype(np.float16)
            if np.array_equal(half.astype(np.float32), arr):  # never round a constant (e.g. a -3.4e38 mask fill)
                kept.append(numpy_helper.from_array(half, init.name + "_fp16"))
                casts.append(helper.make_node("Cast", [init.name + "_fp16"], [init.name], to=TensorProto.FLOAT,
                                              name=init.name + "_to_fp32"))
                continue
        kept.append(init)
    del m.graph.initializer[:]
    m.graph.initializer.extend(kept)
    nodes = casts + list(m.graph.node)  # the casts first: every use comes after them
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    onnx.save(m, str(f))


def drift_over(drift: dict[str, float]) -> dict[str, float]:
    """The outputs whose fp16 drift exceeds FP16_DRIFT."""
    return {k: v for k, v in drift.items() if k in FP16_DRIFT and not v <= FP16_DRIFT[k]}
