"""Loading an ONNX model: FILE.onnx and the files beside it -> a LoadedModel on the onnxruntime backend.

What it reads (see `model.onnx.export` for how these are written):
    FILE.onnx          the graph: attentions (layer, batch, head, query, key), hidden_states (layer + 1, batch,
                       seq, hidden), logits or last_hidden_state, pair_logits
    FILE.head.onnx     the LM head alone (hidden -> logits; pre-LN models: + apply_norm for the final norm)
    FILE.decoder.onnx  causal LMs: generation with a key/value cache; its session is made on first use. Without it
                       (older exports, other tools) generation recomputes the prefix.
    FILE.lmscope.json  what the graph is (architecture, task, sizes) and the bytes each file had at export
    tokenizer files    beside them

Graphs written by other tools (no FILE.lmscope.json): what they hold is read from their output names
(logits / prediction_logits, last_hidden_state, attentions stacked or attentions.N per layer,
hidden_states stacked or hidden_states.N, seq_relationship_logits / sop_logits) and shapes from one probe
run; model type and task come from a config.json beside them if there is one, else from the tokenizer, with a
warning saying so. A graph without attention outputs loads with "attention" unavailable; the other views work.
"""
from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model import capabilities
from model.backends.onnx_backend import DEFAULT_THREADS, OnnxBackend, open_session
from model.capabilities import GraphLayout, infer_layout, onnx_capabilities
from model.errors import ModelLoadError, first_line
from model.modelfiles import load_tokenizer
from model.modelinfo import LoadedModel, model_info

FORMAT = capabilities.ONNX_FORMAT  # the `format` field model.onnx.export writes
FEEDABLE = ("input_ids", "attention_mask", "token_type_ids", "position_ids")

# What each graph output holds (GraphLayout, infer_layout and the name tables) and what that lets a model show
# live in model.capabilities (torch-free, shared with model.describe).


def load_onnx(path: str | os.PathLike, name: str, *, threads: int | None = None) -> LoadedModel:
    """FILE.onnx (+ FILE.head.onnx, FILE.lmscope.json and a tokenizer beside it) -> LoadedModel."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"no such ONNX file: {path}")
    stem = path.name[: -len(".onnx")] if path.name.endswith(".onnx") else path.stem
    meta = _read_metadata(path.with_name(stem + ".lmscope.json"))
    if meta is not None:
        _check_size(path, meta.get("onnx_bytes"))
    try:
        tok = load_tokenizer(path.parent)
    except ModelLoadError as e:
        raise ModelLoadError(f"no usable tokenizer beside {path.name}: {e}. `lmscope export-onnx` writes one; for a graph "
                             "from another tool, copy the model's tokenizer files into its directory") from None
    proto = _read_graph(path)
    graph_outputs = {o.name: len(o.type.tensor_type.shape.dim) for o in proto.graph.output}
    graph_inputs = [i.name for i in proto.graph.input if i.name not in {t.name for t in proto.graph.initializer}]
    if "hidden" in graph_inputs and set(graph_outputs) == {"logits"}:
        raise ModelLoadError(f"{path.name} is the LM-head graph of an lmscope export; load the model graph beside it")
    if "past_keys" in graph_inputs and "present_keys" in graph_outputs:
        raise ModelLoadError(f"{path.name} is the generation graph of an lmscope export; load the model graph beside it")
    unknown = [n for n in graph_inputs if n not in FEEDABLE]
    if "input_ids" not in graph_inputs or unknown:
        raise ModelLoadError(f"{path.name} needs inputs lmscope cannot feed ({', '.join(unknown) or 'no input_ids'}); "
                             f"lmscope feeds {', '.join(FEEDABLE)}. Export without a past-key-value cache")
    _check_dynamic(proto, path)

    warnings: list[str] = []
    layout = infer_layout(graph_outputs)
    if meta is not None:
        missing = [o for o in meta.get("outputs", []) if o not in graph_outputs]
        if missing:
            raise ModelLoadError(f"{path.name} lacks outputs its metadata lists ({', '.join(missing)}): the file was "
                                 "replaced or edited after export; export it again")
        layout = replace(layout, pair_kind=meta.get("pair_kind") or layout.pair_kind)
    threads = threads or int(os.environ.get("LMSCOPE_ONNX_THREADS", DEFAULT_THREADS))

    head, head_path = None, None
    head_meta = (meta or {}).get("head")
    if head_meta:
        head_path = path.with_name(head_meta["file"])
        if head_path.is_file():
            _check_size(head_path, head_meta.get("bytes"))
            head = open_session(head_path, threads)
        else:
            warnings.append(capabilities.missing_head_warning(head_path.name))
    decoder_path = None
    decoder_meta = (meta or {}).get("decoder")
    if decoder_meta:
        decoder_path = path.with_name(decoder_meta["file"])
        if decoder_path.is_file():
            _check_size(decoder_path, decoder_meta.get("bytes"))
        else:
            warnings.append(capabilities.missing_decoder_warning(decoder_path.name))
            decoder_path = None
    n_params = (meta or {}).get("num_parameters") or _count_parameters(proto)
    if capabilities.logits_from_head_graph(layout, head is not None):
        proto = prune(proto, set(layout.outputs) - {layout.logits})
        layout = replace(layout, logits=None)
    session = open_session(proto.SerializeToString(), threads, path)
    del proto

    probe = _probe(session, layout, tok, path)
    cfg = _config_beside(path) if meta is None else meta.get("config") or {}
    model_type, arch, task = _identify(meta, cfg, layout, tok, graph_inputs, path, warnings)
    vocab = probe.get("vocab") or int((meta or cfg).get("vocab_size") or len(tok))
    backend = OnnxBackend(
        session, layout, head=head, threads=threads,
        num_layers=probe.get("layers") or int((meta or {}).get("num_layers") or cfg.get("num_hidden_layers") or cfg.get("n_layer") or 0),
        num_heads=probe.get("heads") or int((meta or {}).get("num_heads") or cfg.get("num_attention_heads") or cfg.get("n_head") or 0),
        vocab_size=vocab, max_positions=_max_positions(meta, cfg, tok), causal=task == "causal-lm",
        decoder_path=decoder_path, num_kv_heads=int((meta or {}).get("num_kv_heads") or 0),
        position_offset=(meta or {}).get("position_offset"),
    )
    if meta is not None:
        for key, got in (("num_layers", backend.num_layers), ("num_heads", backend.num_heads), ("vocab_size", vocab)):
            if meta.get(key) and got and int(meta[key]) != got:
                raise ModelLoadError(f"{path.name} does not match its metadata ({key} {got} in the graph, {meta[key]} in "
                                     f"{path.with_name(stem + '.lmscope.json').name}); export it again")
    if len(tok) > vocab:
        raise ModelLoadError(f"tokenizer/model mismatch beside {path.name}: the tokenizer has {len(tok)} tokens but the "
                             f"graph's vocabulary has {vocab}")

    caps, reasons = _capabilities(backend, layout, task, name)
    hidden = probe.get("hidden") or int((meta or {}).get("hidden_size") or cfg.get("hidden_size") or cfg.get("n_embd") or 0)
    size = path.stat().st_size + (head_path.stat().st_size if head is not None else 0)
    info = model_info(name=name, path=path, backend_kind="onnx", model_type=model_type, architecture=arch, task=task,
                      backend=backend, hidden_size=hidden, num_parameters=n_params, size_bytes=size, capabilities=caps,
                      tokenizer=tok, warnings=warnings)
    info = replace(info, unavailable={**info.unavailable, **graph_reasons(backend, task, name, caps)})
    return LoadedModel(info=info, backend=backend, tokenizer=tok)


def graph_reasons(backend: OnnxBackend, task: str, name: str, caps) -> dict[str, str]:
    """Why views outside `caps` are unavailable, as the graph's layout tells (beyond the task's own)."""
    _, reasons = _capabilities(backend, backend.layout, task, name)
    return {k: v for k, v in reasons.items() if k not in caps}


def _read_metadata(meta_path: Path) -> dict[str, Any] | None:
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelLoadError(f"{meta_path} is not valid JSON ({e}); export the model again") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelLoadError(f"{meta_path} is not lmscope ONNX metadata (no \"format\": \"{FORMAT}\")")
    return meta


def _check_size(f: Path, expected: Any) -> None:
    size = f.stat().st_size
    if expected is not None and size != int(expected):
        raise ModelLoadError(f"{f} is corrupt or truncated: {size} bytes, but its export wrote {int(expected)}; export it again")


def _read_graph(path: Path):
    import onnx

    try:
        proto = onnx.load(str(path))
    except Exception as e:
        raise ModelLoadError(f"{path} is not a readable ONNX model (corrupt or truncated?): {first_line(e)}") from None
    if not proto.graph.node or not proto.graph.output:
        raise ModelLoadError(f"{path} is not a readable ONNX model (corrupt or truncated?): it holds no graph")
    return proto


def _check_dynamic(proto, path: Path) -> None:
    for i in proto.graph.input:
        dims = i.type.tensor_type.shape.dim
        if i.name == "input_ids" and len(dims) == 2 and dims[1].HasField("dim_value"):
            raise ModelLoadError(f"{path.name} was exported for a fixed length of {dims[1].dim_value} tokens; lmscope "
                                 "needs a dynamic sequence axis (export again with `lmscope export-onnx`)")


def prune(model, keep: set[str]):
    """The graph with only the outputs in `keep` and the nodes and initializers they need (onnx.utils.Extractor),
    every input kept. A graph with control flow (If / Loop / Scan bodies read names the extractor does not
    follow) is returned whole."""
    from onnx.utils import Extractor

    if any(a.HasField("g") or len(a.graphs) for n in model.graph.node for a in n.attribute):
        return model
    initializers = {t.name for t in model.graph.initializer}
    inputs = [i.name for i in model.graph.input if i.name not in initializers]
    return Extractor(model).extract_model(inputs, [o.name for o in model.graph.output if o.name in keep])


def _count_parameters(proto) -> int:
    from onnx import TensorProto

    floats = (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16, TensorProto.DOUBLE)
    return int(sum(int(np.prod(t.dims)) for t in proto.graph.initializer if t.data_type in floats))


def _probe(session, layout: GraphLayout, tok, path: Path) -> dict[str, int]:
    """One short forward: does the graph run, and what sizes do its outputs have?"""
    ids = tok("probe", verbose=False)["input_ids"] or [0]
    backend = OnnxBackend(session, layout)
    try:
        out = backend.outputs(torch.tensor([ids]))
    except Exception as e:
        raise ModelLoadError(f"onnxruntime cannot run {path.name}: {first_line(e)}") from None
    found: dict[str, int] = {}
    if layout.attentions:
        a = out[layout.attentions[0]]
        found["layers"] = a.shape[0] if layout.attentions_stacked else len(layout.attentions)
        found["heads"] = a.shape[2] if layout.attentions_stacked else a.shape[1]
    elif layout.hidden_states:
        found["layers"] = (out[layout.hidden_states[0]].shape[0] if layout.hidden_stacked else len(layout.hidden_states)) - 1
    if layout.hidden_states or layout.last_hidden:
        found["hidden"] = out[(layout.hidden_states or (layout.last_hidden,))[0]].shape[-1]
    if layout.logits:
        found["vocab"] = out[layout.logits].shape[-1]
    return found


def _config_beside(path: Path) -> dict[str, Any]:
    f = path.parent / "config.json"
    try:
        cfg = json.loads(f.read_text(encoding="utf-8")) if f.is_file() else {}
    except (UnicodeDecodeError, json.JSONDecodeError):
        cfg = {}
    return cfg if isinstance(cfg, dict) else {}


def _identify(meta, cfg, layout: GraphLayout, tok, graph_inputs, path: Path, warnings: list[str]) -> tuple[str, str, str]:
    """(model_type, architecture, task): from lmscope's metadata, else a config.json beside, else guessed."""
    if meta is not None:
        return meta["model_type"], meta["architecture"], meta["task"]
    from model.backends import torch_backend as tb

    has_lm = layout.logits is not None
    mt = cfg.get("model_type")
    arch = next(iter(cfg.get("architectures") or []), None)
    if mt:
        source = "config.json"
    else:  # guess from the tokenizer and the inputs
        mask = tok.mask_token
        mt = "bert" if "token_type_ids" in graph_inputs else "roberta" if mask == "<mask>" else \
            "bert" if mask else "gpt2"
        source = "the tokenizer"
    if has_lm and (arch in tb.CAUSAL_HEADS or (arch is None and tok.mask_token is None) or (arch or "").endswith("ForCausalLM")):
        task = "causal-lm"
    elif has_lm:
        task = "pretraining" if layout.pair else "masked-lm"
    else:
        task = "encoder"
    warnings.append(f"no lmscope metadata beside {path.name}: read as a {mt} {task} model (model type from {source}, "
                    "task from the graph's outputs); `lmscope export-onnx` writes the metadata")
    return mt, arch or f"onnx:{mt}", task


def _max_positions(meta, cfg, tok) -> int | None:
    n = (meta or {}).get("max_positions") or cfg.get("max_position_embeddings") or cfg.get("n_positions")
    if n:
        return int(n)
    m = getattr(tok, "model_max_length", None)
    return int(m) if m and m < 1_000_000 else None  # unset tokenizers report a huge sentinel


def _capabilities(backend: OnnxBackend, layout: GraphLayout, task: str, name: str) -> tuple[set[str], dict[str, str]]:
    return onnx_capabilities(layout, task, name, num_heads=backend.num_heads, has_lm_head=backend.has_lm_head,
                             has_head_graph=backend.head is not None, pair_kind=backend.pair_kind)
