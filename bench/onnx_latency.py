"""Inspection latency, torch backend vs onnxruntime, on a MiniLM-sized random BERT, measured in the same run.

    python -m bench.onnx_latency            # quick: 5 runs per point
    python -m bench.onnx_latency --full     # 15 runs per point

One inspection = tokenize + forward + per-head attention summaries + masked-LM predictions, i.e.
`model.inspect.inspect(m, text)`, the same call for both backends. The model: 6 layers, 384 hidden, 12 heads,
1536 intermediate, vocab 30522 (all-MiniLM-L6's shape), built from a config (no downloads), exported with
`model.onnx.export.export_onnx`. Each point is the median of several runs, torch and onnxruntime alternating
so that load from other processes hits both alike. Threads: torch.set_num_threads(n) / onnxruntime's
intra-op threads = n.

Target: onnxruntime >= 2x faster than torch at 128 tokens, single thread. Other points are reported only,
plus one for context: onnxruntime's bare forward against a bare transformers eager forward with
output_attentions=True (the comparison in /work/shared/notes/onnx-export.md; lmscope's torch backend runs
SDPA and computes attention maps lazily, so it is already faster than that baseline).
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TARGET_SPEEDUP = 2.0
TARGET_POINT = (128, 1)  # (tokens, threads)
MINILM = dict(layers=6, heads=12, hidden=384, positions=512, vocab=30522)


# What each side runs, printed on every row (rows may say otherwise: the eager, bare-forward and ceiling rows).
ONNX_DOES = "inspect() through onnxruntime (the exported graph + FILE.head.onnx)"
TORCH_DOES = "the same inspect() through lmscope's torch backend (SDPA, lazy attention maps)"


class Row(dict):
    """One measured point: a plain dict (JSON-ready), printable as one line like bench.engine.Figure.
    "passed" None: a row with no target (INFO)."""

    @property
    def name(self) -> str:
        return self["name"]

    @property
    def passed(self) -> bool | None:
        return self["passed"]

    @property
    def missed(self) -> bool:
        return self["passed"] is False

    @property
    def verdict(self) -> str:
        return "INFO" if self["passed"] is None else "PASS" if self["passed"] else "FAIL"

    def line(self) -> str:
        verdict = self.verdict
        extra = ""
        if "matmul_gflops_onnx" in self:  # the ceiling row: say what it was computed from
            extra = (f"  ({self['gflop']:.2f} GFLOP; fp32 matmul onnx {self['matmul_gflops_onnx']:.0f} / torch "
                     f"{self['matmul_gflops_torch']:.0f} GFLOP/s)")
        return (f"{self['name']:<44} onnx {self['onnx_ms']:>8.1f} ms  torch {self['torch_ms']:>8.1f} ms  "
                f"speedup {self['speedup']:>5.2f}x  target {self['target']:<14} {verdict}{extra}  "
                f"onnx: {self.get('onnx_does', ONNX_DOES)} | torch: {self.get('torch_does', TORCH_DOES)}")


def _median_ms(fns: dict, repeat: int) -> dict[str, float]:
    """Median wall time of each function; calls are interleaved so background load affects all alike."""
    for f in fns.values():
        f()  # warm-up
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeat):
        for k, f in fns.items():
            t = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t)
    return {k: float(np.median(v) * 1000) for k, v in times.items()}


def run(quick: bool = True, *, full: bool | None = None) -> list[Row]:
    """Measure every (tokens, threads) point. `full` (as bench.run passes it) means not quick."""
    import torch

    from bench.engine import build_bert, text_of
    from model.backends.onnx_load import load_onnx
    from model.onnx.export import export_onnx
    from model.inspect import inspect
    from model.load import load_model

    if full is not None:
        quick = not full
    repeat = 5 if quick else 15
    rows: list[Row] = []
    old_threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as d:
        model_dir = build_bert(Path(d) / "minilm", **MINILM)
        onnx_path = export_onnx(model_dir, Path(d) / "onnx" / "minilm.onnx").path
        torch_model = load_model(model_dir)
        try:
            for threads in (1, 2):
                torch.set_num_threads(threads)
                onnx_model = load_onnx(onnx_path, onnx_path.name, threads=threads)
                for n in (32, 128, 512):
                    text = text_of(n).replace("fox", "[MASK]", 1)
                    assert len(torch_model.tokenizer(text)["input_ids"]) == n
                    ms = _median_ms({"torch": lambda: inspect(torch_model, text),
                                     "onnx": lambda: inspect(onnx_model, text)}, repeat)
                    speedup = ms["torch"] / ms["onnx"]
                    target = (n, threads) == TARGET_POINT
                    rows.append(Row(
                        name=f"inspection {n} tok, MiniLM 6x384, {threads} thread{'s' if threads > 1 else ''}",
                        tokens=n, threads=threads, torch_ms=ms["torch"], onnx_ms=ms["onnx"], speedup=speedup,
                        target=f">= {TARGET_SPEEDUP:g}x" if target else "(none)",
                        passed=speedup >= TARGET_SPEEDUP if target else None, repeat=repeat,
                    ))
            rows.append(_eager_inspection_row(model_dir, onnx_path, repeat))
            rows.append(_bare_forward_row(model_dir, onnx_path, repeat))
            rows.append(_ceiling_row(torch_model, repeat))
        finally:
            torch.set_num_threads(old_threads)
    return rows


def _eager_inspection_row(model_dir: Path, onnx_path: Path, repeat: int, n: int = 128) -> Row:
    """The same inspect() call through a torch backend that runs transformers' *eager* attention with
    output_attentions (what "torch eager" means in the ONNX issue), against onnxruntime, 1 thread."""
    import dataclasses

    import torch
    from transformers import BertForMaskedLM

    from bench.engine import text_of
    from model.backends.onnx_load import load_onnx
    from model.backends.torch_backend import TorchBackend
    from model.inspect import inspect
    from model.load import load_model

    torch.set_num_threads(1)
    m = load_model(model_dir)
    eager = BertForMaskedLM.from_pretrained(str(model_dir), attn_implementation="eager").eval()
    eager_model = dataclasses.replace(m, backend=TorchBackend(eager, "BertForMaskedLM", record_attention=False))
    onnx_model = load_onnx(onnx_path, onnx_path.name, threads=1)
    text = text_of(n).replace("fox", "[MASK]", 1)
    ms = _median_ms({"torch": lambda: inspect(eager_model, text), "onnx": lambda: inspect(onnx_model, text)}, repeat)
    return Row(name=f"inspection {n} tok, 1 thread, vs torch eager", tokens=n, threads=1, torch_ms=ms["torch"],
               onnx_ms=ms["onnx"], speedup=ms["torch"] / ms["onnx"], target="(none)", passed=None, repeat=repeat,
               torch_does="the same inspect() through a torch backend running transformers' eager attention")


def _bare_forward_row(model_dir: Path, onnx_path: Path, repeat: int, n: int = 128) -> Row:
    """onnxruntime forward (all outputs of the graph lmscope runs) vs transformers eager + output_attentions."""
    import torch
    from transformers import BertForMaskedLM

    from model.backends.onnx_load import load_onnx

    torch.set_num_threads(1)
    onnx_model = load_onnx(onnx_path, onnx_path.name, threads=1)
    ref = BertForMaskedLM.from_pretrained(str(model_dir), attn_implementation="eager").eval()
    ids = torch.randint(5, 200, (1, n), generator=torch.Generator().manual_seed(0))

    def eager():
        with torch.inference_mode():
            ref.bert(input_ids=ids, output_attentions=True)

    ms = _median_ms({"torch": eager, "onnx": lambda: onnx_model.backend.forward(ids)}, repeat)
    return Row(name=f"bare forward {n} tok, 1 thread, vs eager+attn", tokens=n, threads=1, torch_ms=ms["torch"],
               onnx_ms=ms["onnx"], speedup=ms["torch"] / ms["onnx"], target="(none)", passed=None, repeat=repeat,
               onnx_does="the graph's forward (every output lmscope's graph has)",
               torch_does="transformers eager encoder forward with output_attentions")


def encoder_flops(n: int, layers: int, hidden: int, intermediate: int) -> float:
    """Multiply-adds x 2 of one encoder forward over n tokens: Q/K/V/output projections, the two FFN
    matrices, and the two attention products (scores and weighted values).

        >>> round(encoder_flops(128, 6, 384, 1536) / 1e9, 3)  # MiniLM at 128 tokens: GFLOP
        2.869
    """
    projections = 4 * hidden * hidden + 2 * hidden * intermediate  # weights touched per token per layer
    attention = 2 * n * hidden  # QK^T and PV per token per layer
    return 2.0 * n * layers * (projections + attention)


def matmul_gflops(repeat: int, m: int = 128, k: int = 384, n: int = 1536) -> dict[str, float]:
    """fp32 GFLOP/s of one (m, k) x (k, n) matmul -- the encoder's FFN shape -- in torch and in onnxruntime,
    1 thread, interleaved."""
    import onnx
    import torch
    from onnx import TensorProto, helper, numpy_helper

    from model.backends.onnx_backend import make_session

    torch.set_num_threads(1)
    a, b = torch.randn(m, k), torch.randn(k, n)  # (tokens, hidden), (hidden, intermediate)
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "matmul",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, k])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])],
                              [numpy_helper.from_array(b.numpy(), "w")])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8  # what this onnxruntime reads
    onnx.checker.check_model(proto)
    sess, x = make_session(proto.SerializeToString(), threads=1), a.numpy()
    reps = 20 * repeat  # one matmul is ~1 ms: many more runs than a whole inspection
    ms = _median_ms({"torch": lambda: a @ b, "onnx": lambda: sess.run(None, {"x": x})}, reps)
    return {k_: 2.0 * m * k * n / (v / 1000) / 1e9 for k_, v in ms.items()}


def _ceiling_row(torch_model, repeat: int, n: int = 128) -> Row:
    """How fast onnxruntime could at best be: the encoder's FLOPs at onnxruntime's own fp32 matmul rate,
    against lmscope's torch forward measured now. Both runtimes reach about the same matmul rate on this CPU,
    so when the torch forward already runs near that rate, no graph can be 2x faster in float32."""
    import torch

    rates = matmul_gflops(repeat)
    cfg = torch_model.backend.model.config
    flops = encoder_flops(n, cfg.num_hidden_layers, cfg.hidden_size, cfg.intermediate_size)
    floor_ms = flops / (rates["onnx"] * 1e9) * 1000
    ids = torch.randint(5, 200, (1, n), generator=torch.Generator().manual_seed(0))
    torch.set_num_threads(1)
    ms = _median_ms({"torch": lambda: torch_model.backend.forward(ids, attentions=False)}, repeat)
    return Row(name=f"ceiling {n} tok: encoder FLOPs at onnx matmul rate", tokens=n, threads=1, torch_ms=ms["torch"],
               onnx_ms=floor_ms, speedup=ms["torch"] / floor_ms, target="(best possible)", passed=None, repeat=repeat,
               onnx_does="no run: the encoder's FLOPs / onnxruntime's measured fp32 matmul rate",
               torch_does="lmscope's torch forward without attention maps, same ids",
               gflop=flops / 1e9, matmul_gflops_torch=rates["torch"], matmul_gflops_onnx=rates["onnx"])


if __name__ == "__main__":
    for row in run(quick="--full" not in sys.argv):
        print(row.line(), flush=True)
