"""The onnxruntime backend: an exported graph run on the CPU, answering like the torch backend.

    >>> m = load_onnx(Path("out/bert.onnx"), "bert.onnx")                 # doctest: +SKIP
    >>> out = m.backend.forward(torch.tensor([[2, 51, 4, 3]]))           # doctest: +SKIP
    >>> out.attention[0]().shape, out.logits_at(torch.tensor([2])).shape  # doctest: +SKIP
    (torch.Size([1, 4, 4, 4]), torch.Size([1, 1, 200]))

What it reads (see `model.onnx.export` for how these are written):
    FILE.onnx          the graph: attentions (layer, batch, head, query, key), hidden_states (layer + 1, batch,
                       seq, hidden), logits or last_hidden_state, pair_logits
    FILE.head.onnx     the LM head alone (hidden -> logits; pre-LN models: + apply_norm for the final norm)
    FILE.decoder.onnx  causal LMs: generation with a key/value cache (`OnnxBackend.decoder`); its session is made
                       on first use. Without it (older exports, other tools) generation recomputes the prefix.
    FILE.lmscope.json  what the graph is (architecture, task, sizes) and the bytes each file had at export
    tokenizer files    beside them

Logits and the logit lens: when the head graph is there, the main graph is loaded without its `logits`
output (and every node only it needed), and logits are computed by the head graph only at the positions a
view asks for — what the torch backend does. onnxruntime computes every node of a graph whatever outputs a
caller requests (measured: MiniLM at 128 tokens 49 ms with the LM head, 24 ms without), so this halves an
inspection. The head graph also gives the logit lens: each layer's hidden state through (ln_f and) the head.

Graphs written by other tools (no FILE.lmscope.json): what they hold is read from their output names
(logits / prediction_logits, last_hidden_state, attentions stacked or attentions.N per layer,
hidden_states stacked or hidden_states.N, seq_relationship_logits / sop_logits) and shapes from one probe
run; model type and task come from a config.json beside them if there is one, else from the tokenizer, with a
warning saying so. A graph without attention outputs loads with "attention" unavailable; the other views work.
"""
from __future__ import annotations

import json
import os
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model import capabilities
from model.backends.base import Backend, Decoder, ForwardOutput
from model.capabilities import GraphLayout, infer_layout, onnx_capabilities
from model.load import LoadedModel, ModelLoadError

FORMAT = capabilities.ONNX_FORMAT  # the `format` field model.onnx.export writes
# Threads per session. Default 1: the app runs several inspections at once on a 2-core machine, and a second
# torch thread was measured slower than one for short inputs here (shared/notes/environment.md); compare both
# with bench/onnx_latency.py. LMSCOPE_ONNX_THREADS (or threads=) overrides.
DEFAULT_THREADS = 1
FEEDABLE = ("input_ids", "attention_mask", "token_type_ids", "position_ids")

# What each graph output holds (GraphLayout, infer_layout and the name tables) and what that lets a model show
# live in model.capabilities (torch-free, shared with model.describe).


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


def make_session(model_or_path, threads: int | None = None):
    """An onnxruntime CPU session; `model_or_path` is a file or serialized model bytes."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads or int(os.environ.get("LMSCOPE_ONNX_THREADS", DEFAULT_THREADS))
    so.inter_op_num_threads = 1
    so.log_severity_level = 3  # errors only; they surface as exceptions anyway
    return ort.InferenceSession(model_or_path if isinstance(model_or_path, bytes) else str(model_or_path), so,
                                providers=["CPUExecutionProvider"])


class OnnxBackend(Backend):
    """A graph in an onnxruntime session (and, when exported by lmscope, its LM head in a second one).
    `forward` only calls `InferenceSession.run`, which is thread-safe; nothing is mutated."""

    kind = "onnx"

    def __init__(self, session, layout: GraphLayout, *, head=None, num_layers: int = 0, num_heads: int = 0,
                 vocab_size: int = 0, max_positions: int | None = None, causal: bool = False, threads: int = 1,
                 decoder_path: Path | None = None, num_kv_heads: int = 0, position_offset: int | None = None):
        self.session = session
        self.head = head
        self.decoder_path = decoder_path  # FILE.decoder.onnx, checked at load; its session is made on first use
        self._decoder_session = None
        self._decoder_lock = threading.Lock()
        self.layout = layout
        self.threads = threads
        self.num_layers, self.num_heads, self.vocab_size = num_layers, num_heads, vocab_size
        self.num_kv_heads = num_kv_heads or num_heads  # fewer than num_heads: grouped-query attention
        self.position_offset = position_offset  # None: unknown (model.inspect.max_tokens then goes by model type)
        self.max_positions = max_positions
        self.causal = causal
        self.pair_kind = layout.pair_kind
        self.has_pair_head = layout.pair is not None
        self.has_attention = bool(layout.attentions)
        self.has_lm_head = head is not None or layout.logits is not None
        self.head_norm = head is not None and any(i.name == "apply_norm" for i in head.get_inputs())
        self._inputs = {i.name: i for i in session.get_inputs()}
        self._outputs = [o.name for o in session.get_outputs()]
        batch_dim = self._inputs["input_ids"].shape[0]
        self.fixed_batch = batch_dim if isinstance(batch_dim, int) else None

    # -- forward ------------------------------------------------------------------------------------
    def _feed(self, input_ids, attention_mask, token_type_ids) -> dict[str, np.ndarray]:
        values = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids,
                  "position_ids": torch.arange(input_ids.shape[1]).expand_as(input_ids)}
        if values["attention_mask"] is None:
            values["attention_mask"] = torch.ones_like(input_ids)
        if values["token_type_ids"] is None:
            values["token_type_ids"] = torch.zeros_like(input_ids)
        feed = {}
        for name, meta in self._inputs.items():
            dtype = np.int32 if meta.type == "tensor(int32)" else np.int64
            feed[name] = np.ascontiguousarray(values[name].numpy().astype(dtype, copy=False))
        return feed

    def _run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        b = feed["input_ids"].shape[0]
        if self.fixed_batch is None or self.fixed_batch == b:
            return dict(zip(self._outputs, self.session.run(self._outputs, feed)))
        if self.fixed_batch != 1:
            raise ValueError(f"this ONNX graph only takes batches of {self.fixed_batch} rows, got {b}")
        rows = [self._run({k: v[i:i + 1] for k, v in feed.items()}) for i in range(b)]  # a batch-1 graph: row by row
        return {k: np.concatenate([r[k] for r in rows], axis=self._batch_axis(k)) for k in rows[0]}

    def _batch_axis(self, name: str) -> int:
        stacked = (self.layout.attentions_stacked and name in self.layout.attentions) or \
                  (self.layout.hidden_stacked and name in self.layout.hidden_states)
        return 1 if stacked else 0

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, *, attentions=True, hidden_states=True):
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be (batch, seq), got shape {tuple(input_ids.shape)}")
        out = {k: torch.from_numpy(v) for k, v in self._run(self._feed(input_ids, attention_mask, token_type_ids)).items()}
        lay = self.layout

        if lay.hidden_stacked:
            hs = list(out[lay.hidden_states[0]].unbind(0))  # L + 1 x (batch, seq, hidden)
        else:
            hs = [out[n] for n in lay.hidden_states]
        last = hs[-1] if hs else out.get(lay.last_hidden) if lay.last_hidden else None  # (batch, seq, hidden)
        if not hs and last is not None:
            hs = [last]

        attn_fns = None
        if attentions and lay.attentions:
            maps = out[lay.attentions[0]].unbind(0) if lay.attentions_stacked else [out[n] for n in lay.attentions]
            attn_fns = [(lambda heads=None, a=a: a if heads is None else a[:, heads]) for a in maps]  # (batch, head, q, k)

        logits = logits_fn = None
        if self.head is not None and last is not None:
            def logits_fn(positions: torch.Tensor, _last=last) -> torch.Tensor:
                return self._head(_last[:, positions, :], norm=False)  # (batch, n, vocab)
        elif lay.logits:
            logits = out[lay.logits].float()  # (batch, seq, vocab)

        return ForwardOutput(
            logits=logits, logits_fn=logits_fn,
            hidden_states=hs if hidden_states else hs[-1:],
            attention=attn_fns,
            pair_logits=out[lay.pair].float() if lay.pair else None,  # (batch, 2)
        )

    def _head(self, hidden: torch.Tensor, norm: bool) -> torch.Tensor:
        """(batch, n, hidden) -> (batch, n, vocab) through the head graph."""
        feed = {"hidden": np.ascontiguousarray(hidden.float().numpy())}
        if self.head_norm:
            feed["apply_norm"] = np.array(norm)
        return torch.from_numpy(self.head.run(["logits"], feed)[0])

    # -- logit lens ------------------------------------------------------------------------------------
    def lens(self, hidden: torch.Tensor, layer: int) -> torch.Tensor:
        if self.head is None:
            raise ValueError("the logit lens needs the LM head graph (FILE.head.onnx) that `lmscope export-onnx` writes")
        if not 0 <= layer <= self.num_layers:
            raise ValueError(f"layer {layer} is out of range: hidden states are 0..{self.num_layers}")
        return self._head(hidden, norm=layer < self.num_layers)  # the last hidden state already went through the norm

    # -- incremental decoding ------------------------------------------------------------------------------
    def decoder(self, input_ids: torch.Tensor) -> Decoder | None:
        """A KV-cached decoder through FILE.decoder.onnx; None without one (callers recompute the prefix)."""
        if self.decoder_path is None:
            return None
        with self._decoder_lock:  # one session per backend, shared by every generation (run is thread-safe)
            if self._decoder_session is None:
                self._decoder_session = _session(str(self.decoder_path), self.threads, self.decoder_path)
        return _OnnxDecoder(self, self._decoder_session, input_ids)


class _OnnxDecoder(Decoder):
    """The key/value cache as two arrays (layer, batch, head, length, dim) owned by this decoder; each
    model call feeds the tokens not yet read (the prompt first, then one per step) with the cache so far
    and keeps the cache the graph returns, with the logits after the last token."""

    def __init__(self, backend: OnnxBackend, session, input_ids: torch.Tensor):
        super().__init__(input_ids, backend.max_positions)
        self._session = session
        past = next(i for i in session.get_inputs() if i.name == "past_keys")
        layers, _, heads, _, dim = past.shape  # (layer, batch, head, past, dim): batch and past are dynamic
        self._keys = self._values = np.zeros((layers, input_ids.shape[0], heads, 0, dim), dtype=np.float32)
        self._last: np.ndarray | None = None  # (batch, vocab) logits after the last token read

    def _read(self, ids: torch.Tensor) -> None:
        self._last, self._keys, self._values = self._session.run(
            None, {"input_ids": np.ascontiguousarray(ids.numpy()), "past_keys": self._keys, "past_values": self._values})

    def _logits(self) -> torch.Tensor:
        return torch.from_numpy(self._last)

    def _select(self, idx: torch.Tensor) -> None:
        i = idx.numpy()
        self._keys, self._values, self._last = self._keys[:, i], self._values[:, i], self._last[i]  # copies


# ---------------------------------------------------------------------------------------------------
# Loading.


def load_onnx(path: str | os.PathLike, name: str, *, threads: int | None = None) -> LoadedModel:
    """FILE.onnx (+ FILE.head.onnx, FILE.lmscope.json and a tokenizer beside it) -> LoadedModel."""
    from model.load import load_tokenizer, model_info

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
            head = _session(head_path, threads)
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
    session = _session(proto.SerializeToString(), threads, path)
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
    info = model_info(name, path, "onnx", model_type, arch, task, backend, hidden, n_params, size, caps, tok, warnings)
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
        raise ModelLoadError(f"{path} is not a readable ONNX model (corrupt or truncated?): {_first_line(e)}") from None
    if not proto.graph.node or not proto.graph.output:
        raise ModelLoadError(f"{path} is not a readable ONNX model (corrupt or truncated?): it holds no graph")
    return proto


def _check_dynamic(proto, path: Path) -> None:
    for i in proto.graph.input:
        dims = i.type.tensor_type.shape.dim
        if i.name == "input_ids" and len(dims) == 2 and dims[1].HasField("dim_value"):
            raise ModelLoadError(f"{path.name} was exported for a fixed length of {dims[1].dim_value} tokens; lmscope "
                                 "needs a dynamic sequence axis (export again with `lmscope export-onnx`)")


def _session(model, threads: int, path: Path | None = None):
    try:
        return make_session(model, threads)
    except Exception as e:
        where = path or model
        raise ModelLoadError(f"onnxruntime cannot load {where} (corrupt or truncated?): {_first_line(e)}") from None


def _first_line(e: BaseException) -> str:
    s = str(e).strip()
    return s.splitlines()[0][:300] if s else type(e).__name__


def _count_parameters(proto) -> int:
    from onnx import TensorProto

    floats = (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16, TensorProto.DOUBLE)
    return int(sum(int(np.prod(t.dims)) for t in proto.graph.initializer if t.data_type in floats))


def _probe(session, layout: GraphLayout, tok, path: Path) -> dict[str, int]:
    """One short forward: does the graph run, and what sizes do its outputs have?"""
    ids = tok("probe", verbose=False)["input_ids"] or [0]
    backend = OnnxBackend(session, layout)
    try:
        out = backend._run(backend._feed(torch.tensor([ids]), None, None))
    except Exception as e:
        raise ModelLoadError(f"onnxruntime cannot run {path.name}: {_first_line(e)}") from None
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
