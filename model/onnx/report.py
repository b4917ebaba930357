"""What an export wrote: the report `export_onnx` returns (and the CLI prints), and FILE.lmscope.json, the
metadata the onnxruntime backend and the Models page read beside the graph."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from model.capabilities import ONNX_FORMAT
from model.onnx.parity import TOLERANCE
from model.onnx.trace import EXPORTER
from model.onnx.wrappers import ExportSpec, HeadModule, position_offset

LMSCOPE_VERSION = "0.1.0"


@dataclass(frozen=True)
class ExportReport:
    """What `export_onnx` wrote and how closely onnxruntime reproduced torch.

    parity: output name -> max |onnx - torch| / max(1, max |torch|) over the sample inputs (real rows only);
    fp16_drift: the same against the original float32 model, for fp16 exports (else empty).
    """

    path: Path
    head_path: Path | None
    decoder_path: Path | None  # FILE.decoder.onnx (causal language models)
    metadata_path: Path
    tokenizer_files: tuple[str, ...]
    architecture: str
    model_type: str
    task: str
    outputs: tuple[str, ...]
    opset: int
    fp16: bool
    exporter: str
    parity: dict[str, float]
    tolerance: float
    fp16_drift: dict[str, float]
    size_bytes: int
    seconds: float

    def lines(self) -> list[str]:
        out = [f"exported {self.architecture} ({self.task}) to {self.path} in {self.seconds:.1f} s, "
               f"{self.size_bytes / 1e6:.1f} MB{' (fp16 weights)' if self.fp16 else ''}",
               f"  outputs: {', '.join(self.outputs)}"]
        if self.head_path:
            out.append(f"  LM head for the logit lens: {self.head_path.name}")
        if self.decoder_path:
            out.append(f"  generation with a key/value cache: {self.decoder_path.name} "
                       f"({self.decoder_path.stat().st_size / 1e6:.1f} MB)")
        out.append(f"  metadata: {self.metadata_path.name}; tokenizer: {', '.join(self.tokenizer_files)}")
        out.append("  onnxruntime vs torch (max error, tolerance %.0e): " % self.tolerance
                   + ", ".join(f"{k} {v:.1e}" for k, v in self.parity.items()))
        if self.fp16_drift:
            out.append("  fp16 weights vs the float32 model: " + ", ".join(f"{k} {v:.1e}" for k, v in self.fp16_drift.items()))
        return out

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("path", "head_path", "decoder_path", "metadata_path"):
            d[k] = None if d[k] is None else str(d[k])
        return d


def build_metadata(spec: ExportSpec, model, head: HeadModule | None, tok, path, opset, fp16, parity, drift, tmp: Path,
                   head_out: Path, decoder_out: Path, n_batches: int) -> dict[str, Any]:
    """FILE.lmscope.json: what the graphs are, the sizes the files have now (checked at load), and the parity."""
    import onnxruntime
    import transformers

    mc = model.config
    heads = int(getattr(mc, "num_attention_heads", 0) or getattr(mc, "n_heads", 0) or getattr(mc, "n_head", 0))
    return {
        "format": ONNX_FORMAT,
        "lmscope_version": LMSCOPE_VERSION,
        "architecture": spec.architecture,
        "model_type": spec.model_type,
        "task": spec.task,
        "pair_kind": spec.pair_kind,
        "inputs": spec.inputs,
        "outputs": spec.outputs,
        "head": None if head is None else {
            "file": head_out.name, "bytes": (tmp / "head.onnx").stat().st_size,
            "inputs": ["hidden"] + (["apply_norm"] if head.norm is not None else []), "outputs": ["logits"]},
        "decoder": None if not (tmp / "decoder.onnx").exists() else {
            "file": decoder_out.name, "bytes": (tmp / "decoder.onnx").stat().st_size,
            "inputs": ["input_ids", "past_keys", "past_values"], "outputs": ["logits", "present_keys", "present_values"]},
        "onnx_bytes": (tmp / "model.onnx").stat().st_size,
        "num_layers": int(getattr(mc, "num_hidden_layers", 0) or getattr(mc, "n_layers", 0) or getattr(mc, "n_layer", 0)),
        "num_heads": heads,
        "num_kv_heads": int(getattr(mc, "num_key_value_heads", 0) or heads),  # fewer than heads: grouped-query attention
        "hidden_size": int(getattr(mc, "hidden_size", 0) or getattr(mc, "dim", 0) or getattr(mc, "n_embd", 0)),
        "vocab_size": int(mc.vocab_size),
        "max_positions": getattr(mc, "max_position_embeddings", None) or getattr(mc, "n_positions", None),
        "position_offset": position_offset(model),
        "num_parameters": int(sum(p.numel() for p in model.parameters())),
        "mask_token": tok.mask_token,
        "opset": opset,
        "weights": "float16" if fp16 else "float32",
        "exporter": EXPORTER,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "onnxruntime": onnxruntime.__version__},
        "source": str(path),
        "parity": {"max_error": parity, "tolerance": TOLERANCE, "fp16_drift": drift or None,
                   "measure": "max |onnx - torch| / max(1, max |torch|), real positions only",
                   "inputs": f"{n_batches} batches: 1 row, and 3 right-padded rows"},
        "config": mc.to_dict(),
    }
