"""Export a transformers model to ONNX that keeps its attention maps, hidden states and LM head.

    >>> r = export_onnx("assets/models/bert", Path("out/bert.onnx"))       # doctest: +SKIP
    >>> r.parity["attentions"] <= r.tolerance                              # doctest: +SKIP
    True

Writes FILE.onnx, FILE.head.onnx (the LM head), FILE.decoder.onnx (causal LMs: generation with a key/value
cache), FILE.lmscope.json and the tokenizer, all under temporary names in the same directory, checked in
onnxruntime against torch (model.onnx.parity), then renamed; a failed or interrupted export leaves none of
them behind, and the temp directory of a killed one is removed by the next export to the same file.
docs/onnx.md lists what each file holds and which families export.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from model.errors import ExportError
from model.load import LoadedModel, ModelLoadError
from model.onnx import fp16 as fp16_weights
from model.onnx.parity import (TOLERANCE, check_decoder, compare, decoder_samples, run_onnx, run_torch,
                               sample_batches)
from model.onnx.report import ExportReport, build_metadata
from model.onnx.trace import EXPORTER, MAX_PROTO_BYTES, trace_decoder, trace_graph, trace_head
from model.onnx.wrappers import DecoderModule, GraphModule, HeadModule, position_offset, spec_for

OPSETS = range(14, 21)  # 14: first opset the tracer exports these models with; 20: the tracer's newest

# model_type -> family name: the families whose export and onnxruntime serving are tested against transformers
# (tests/model/test_onnx_backend.py, test_onnx_families.py). Causal ones also get FILE.decoder.onnx.
EXPORTABLE = {"bert": "BERT", "roberta": "RoBERTa", "albert": "ALBERT", "distilbert": "DistilBERT", "gpt2": "GPT-2",
              "llama": "Llama", "qwen2": "Qwen2", "mistral": "Mistral", "phi3": "Phi-3", "gemma": "Gemma",
              "gpt_neo": "GPT-Neo", "opt": "OPT", "electra": "ELECTRA", "deberta-v2": "DeBERTa-v2",
              "xlm-roberta": "XLM-RoBERTa", "modernbert": "ModernBERT"}
# model_type -> why its export is refused (what exporting a tiny random one does)
REFUSED = {
    "mamba": "a state-space model with no attention layers: there are no attention maps to export",
    "t5": "an encoder-decoder: its graph needs decoder inputs, and lmscope exports encoders and decoders only",
}


def export_onnx(model_ref_or_loaded: str | os.PathLike | LoadedModel, out: Path, opset: int = 17, fp16: bool = False,
                *, attentions: bool = True, decoder: bool = True) -> ExportReport:
    """Export a model (a path, a listed name, or a torch-backed LoadedModel) to `out` (FILE.onnx), check it in
    onnxruntime against torch, and only then put the files in place. `attentions=False` leaves the attention
    output out of the graph (smaller and faster; lmscope then shows no attention views for it).
    `decoder=False` skips FILE.decoder.onnx (it holds a second copy of the weights; without it generation
    recomputes the prefix at every step)."""
    t0 = time.perf_counter()
    out = Path(out).expanduser()
    if out.suffix != ".onnx":
        raise ExportError(f"the output file must end in .onnx, got {str(out)!r}")
    if out.is_dir():
        raise ExportError(f"{out} is a directory; give a file name ending in .onnx")
    if isinstance(opset, bool) or not isinstance(opset, int) or opset not in OPSETS:
        raise ExportError(f"opset must be between {OPSETS.start} and {OPSETS.stop - 1}, got {opset!r}")
    path = _source_path(model_ref_or_loaded)
    cfg, tok = _read_source(path)
    model, arch, task = _fresh_model(path, cfg)
    spec = spec_for(arch, cfg["model_type"], task, attentions)
    n_params = sum(p.numel() for p in model.parameters())
    if 4 * n_params > MAX_PROTO_BYTES:
        raise ExportError(f"{path} has {n_params / 1e6:.0f}M parameters: over the 2 GB a single ONNX file can hold "
                          "(external-data export is not supported)")

    out.parent.mkdir(parents=True, exist_ok=True)
    stem = out.name[: -len(".onnx")]
    head_out, meta_out = out.with_name(stem + ".head.onnx"), out.with_name(stem + ".lmscope.json")
    decoder_out = out.with_name(stem + ".decoder.onnx")
    _remove_dead_exports(out.parent, stem)
    tmp = Path(tempfile.mkdtemp(prefix=f".{stem}.export-{os.getpid()}-", dir=out.parent))
    try:
        tok_dir = tmp / "tokenizer"
        tok_files = [Path(f).name for f in tok.save_pretrained(str(tok_dir))]
        _check_tokenizer_clash(tok_dir, tok_files, out.parent, meta_out.name)

        batches = sample_batches(tok, spec, _max_tokens(model))
        graph, head = GraphModule(model, spec).eval(), (_head_module(model, arch, task, tok) if spec.has_head else None)
        reference = run_torch(graph, head, spec, batches)
        if fp16:
            fp16_weights.round_weights_to_fp16(model)
            fp32_reference, reference = reference, run_torch(graph, head, spec, batches)

        trace_graph(graph, batches[-1], spec, tmp / "model.onnx", opset)
        if head is not None:
            trace_head(head, batches[-1], tmp / "head.onnx", opset)
        dec = DecoderModule(model).eval() if decoder and spec.task == "causal-lm" else None
        if dec is not None:
            trace_decoder(dec, decoder_samples(batches)[-1], tmp / "decoder.onnx", opset)
        if fp16:
            for f in (tmp / "model.onnx", tmp / "head.onnx", tmp / "decoder.onnx"):
                if f.exists():
                    fp16_weights.store_weights_fp16(f)

        got = run_onnx(tmp / "model.onnx", tmp / "head.onnx" if head is not None else None, spec, batches)
        parity = compare(got, reference, batches)
        if dec is not None:
            parity["decoder"] = check_decoder(dec, tmp / "decoder.onnx", batches, reference)
        bad = {k: v for k, v in parity.items() if not v <= TOLERANCE}
        if bad:
            raise ExportError("onnxruntime does not reproduce torch within %.0e (%s); nothing was written"
                              % (TOLERANCE, ", ".join(f"{k} {v:.1e}" for k, v in bad.items())))
        drift: dict[str, float] = {}
        if fp16:
            drift = compare(got, fp32_reference, batches)
            over = fp16_weights.drift_over(drift)
            if over:
                raise ExportError("fp16 weights move this model's outputs too far from float32 ("
                                  + ", ".join(f"{k} {v:.1e} > {fp16_weights.FP16_DRIFT[k]:.0e}" for k, v in over.items())
                                  + "); export without --fp16")

        meta = build_metadata(spec, model, head, tok, path, opset, fp16, parity, drift, tmp, head_out, decoder_out,
                              len(batches))
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")

        # Put everything in place, the graph last: a FILE.onnx that exists always has complete companions.
        for name in tok_files:
            os.replace(tok_dir / name, out.parent / name)
        if head is not None:
            os.replace(tmp / "head.onnx", head_out)
        elif head_out.exists():
            head_out.unlink()  # a stale head from an earlier export of another model to the same name
        if dec is not None:
            os.replace(tmp / "decoder.onnx", decoder_out)
        elif decoder_out.exists():
            decoder_out.unlink()
        os.replace(tmp / "meta.json", meta_out)
        os.replace(tmp / "model.onnx", out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    size = out.stat().st_size + (head_out.stat().st_size if head is not None else 0)
    return ExportReport(
        path=out, head_path=head_out if head is not None else None,
        decoder_path=decoder_out if dec is not None else None, metadata_path=meta_out,
        tokenizer_files=tuple(tok_files), architecture=arch, model_type=spec.model_type, task=spec.task,
        outputs=tuple(spec.outputs), opset=opset, fp16=fp16, exporter=EXPORTER, parity=parity, tolerance=TOLERANCE,
        fp16_drift=drift, size_bytes=size, seconds=time.perf_counter() - t0,
    )


def _remove_dead_exports(directory: Path, stem: str) -> list[Path]:
    """Remove the temp directories of earlier exports to the same file whose process died before its own
    cleanup could run (SIGKILL, power cut): `.STEM.export-PID-xxxx` where PID is no longer running."""
    removed = []
    prefix = f".{stem}.export-"
    for d in directory.iterdir():
        pid = d.name[len(prefix):].split("-", 1)[0] if d.name.startswith(prefix) else ""
        if not pid.isdigit() or not d.is_dir() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
            continue  # still running (another export to the same file): not ours to touch
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        shutil.rmtree(d, ignore_errors=True)
        removed.append(d)
    return removed


def _source_path(ref) -> Path:
    from model.load import resolve

    if isinstance(ref, LoadedModel):
        if ref.info.backend != "torch":
            raise ExportError(f"{ref.name} runs on the {ref.info.backend} backend; only transformers models can be exported")
        return Path(ref.info.path)
    path, _ = resolve(ref)
    if path.suffix == ".onnx":
        raise ExportError(f"{path} is already an ONNX model")
    return path


def refusal(model_type: str) -> str | None:
    """Why a model of this type cannot be exported (one line), or None when it can."""
    if model_type == "lmscope-elmo":
        return "an ELMo model; ONNX export covers the transformer architectures only"
    if model_type in EXPORTABLE:
        return None
    if model_type in REFUSED:
        return f"a {model_type} model, which ONNX export refuses ({REFUSED[model_type]})"
    return (f"a {model_type} model; ONNX export (with attention outputs, checked against torch) is tested for "
            f"{', '.join(EXPORTABLE.values())} so far: inspect it on the torch backend")


def _read_source(path: Path):
    from model.load import IMPORT_LOCK, check_weights, load_tokenizer, read_config

    cfg = read_config(path)
    why = refusal(cfg["model_type"])
    if why:
        raise ExportError(f"{path} is {why}")
    check_weights(path)
    with IMPORT_LOCK:
        return cfg, load_tokenizer(path)


def _fresh_model(path: Path, cfg: dict[str, Any]) -> tuple[nn.Module, str, str]:
    """(model, class name, task): a new eager-attention instance of the class and task the loader chooses
    (never the loader's shared model: tracing and fp16 rounding mutate it)."""
    import transformers

    from model import families
    from model.load import IMPORT_LOCK

    arch, task, _ = families.choose_architecture(cfg["model_type"], cfg.get("architectures"))
    try:
        with IMPORT_LOCK:  # transformers' lazy class lookup is not thread-safe (see model.load)
            model = getattr(transformers, arch).from_pretrained(
                str(path), local_files_only=True, use_safetensors=True, dtype=torch.float32, attn_implementation="eager")
    except Exception as e:
        raise ModelLoadError(f"cannot load {path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    return model.eval(), arch, task


def _head_module(model: nn.Module, arch: str, task: str, tok) -> HeadModule:
    """The LM head and lens norm the torch backend finds and checks against the model's own logits."""
    from model.backends.torch_backend import TorchBackend

    backend = TorchBackend(model, arch, task=task, record_attention=False)
    backend.probe_heads(torch.tensor([tok("probe the head", verbose=False)["input_ids"]]))
    if backend.head_fn is None or not backend.has_lens:
        why = backend.reasons.get("lens") or f"{arch} has no language-model head lmscope can apply"
        raise ExportError(f"cannot export {arch}: {why}")
    return HeadModule(model, backend.head_fn, backend.lens_norm).eval()


def _max_tokens(model: nn.Module) -> int:
    cfg = model.config
    n = getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None) or 512
    return n - position_offset(model)


def _check_tokenizer_clash(tok_dir: Path, names: list[str], target: Path, own_meta: str) -> None:
    """Refuse to overwrite a different tokenizer that belongs to something else in the directory (another
    export, a Hugging Face model, a graph from another tool). Re-exporting FILE alone may replace its own."""
    others = [p.name for p in target.glob("*.lmscope.json") if p.name != own_meta]
    if (target / own_meta).exists() and not others:
        return
    for name in names:
        old = target / name
        if old.is_file() and old.read_bytes() != (tok_dir / name).read_bytes():
            owner = f"{others[0][: -len('.lmscope.json')]}.onnx" if others else "another model"
            raise ExportError(f"{target} already holds a different tokenizer ({name}, used by {owner}); "
                              "export into a directory of its own")
