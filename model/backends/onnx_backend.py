"""The onnxruntime backend: an exported graph run on the CPU, answering like the torch backend
(model.backends.onnx_load reads the files and builds it).

    >>> m = load_onnx(Path("out/bert.onnx"), "bert.onnx")                 # doctest: +SKIP
    >>> out = m.backend.forward(torch.tensor([[2, 51, 4, 3]]))           # doctest: +SKIP
    >>> out.attention[0]().shape, out.logits_at(torch.tensor([2])).shape  # doctest: +SKIP
    (torch.Size([1, 4, 4, 4]), torch.Size([1, 1, 200]))

Logits and the logit lens: when the head graph (FILE.head.onnx) is there, the main graph is loaded without
its `logits` output (and every node only it needed), and logits are computed by the head graph only at the
positions a view asks for — what the torch backend does. onnxruntime computes every node of a graph whatever
outputs a caller requests (measured: MiniLM at 128 tokens 49 ms with the LM head, 24 ms without), so this
halves an inspection. The head graph also gives the logit lens: each layer's hidden state through (ln_f and)
the head. Causal-LM exports bring FILE.decoder.onnx, generation with a key/value cache (`OnnxBackend.decoder`).
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import torch

from model.backends.base import Backend, Decoder, ForwardOutput
from model.capabilities import GraphLayout
from model.errors import InputError, ModelLoadError, Unavailable, first_line

# Threads per session. Default 1: the app runs several inspections at once on a 2-core machine, and a second
# torch thread was measured slower than one for short inputs here; compare both with bench/onnx_latency.py.
# LMSCOPE_ONNX_THREADS (or threads=) overrides.
DEFAULT_THREADS = 1


def make_session(model_or_path, threads: int | None = None):
    """An onnxruntime CPU session; `model_or_path` is a file or serialized model bytes."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads or int(os.environ.get("LMSCOPE_ONNX_THREADS", DEFAULT_THREADS))
    so.inter_op_num_threads = 1
    so.log_severity_level = 3  # errors only; they surface as exceptions anyway
    return ort.InferenceSession(model_or_path if isinstance(model_or_path, bytes) else str(model_or_path), so,
                                providers=["CPUExecutionProvider"])


def open_session(model, threads: int, path: Path | None = None):
    """`make_session`, a failure refused as ModelLoadError naming `path` (or the model)."""
    try:
        return make_session(model, threads)
    except Exception as e:
        where = path or model
        raise ModelLoadError(f"onnxruntime cannot load {where} (corrupt or truncated?): {first_line(e)}") from None


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

    def outputs(self, input_ids, attention_mask=None, token_type_ids=None) -> dict[str, np.ndarray]:
        """Every graph output by name, as onnxruntime returns it."""
        return self._run(self._feed(input_ids, attention_mask, token_type_ids))

    def _run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        b = feed["input_ids"].shape[0]
        if self.fixed_batch is None or self.fixed_batch == b:
            return dict(zip(self._outputs, self.session.run(self._outputs, feed)))
        if self.fixed_batch != 1:
            raise Unavailable(f"this ONNX graph only takes batches of {self.fixed_batch} rows, got {b}")
        rows = [self._run({k: v[i:i + 1] for k, v in feed.items()}) for i in range(b)]  # a batch-1 graph: row by row
        return {k: np.concatenate([r[k] for r in rows], axis=self._batch_axis(k)) for k in rows[0]}

    def _batch_axis(self, name: str) -> int:
        stacked = (self.layout.attentions_stacked and name in self.layout.attentions) or \
                  (self.layout.hidden_stacked and name in self.layout.hidden_states)
        return 1 if stacked else 0

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, *, attentions=True, hidden_states=True):
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be (batch, seq), got shape {tuple(input_ids.shape)}")
        out = {k: torch.from_numpy(v) for k, v in self.outputs(input_ids, attention_mask, token_type_ids).items()}
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
            raise Unavailable("the logit lens needs the LM head graph (FILE.head.onnx) that `lmscope export-onnx` writes")
        if not 0 <= layer <= self.num_layers:
            raise InputError(f"layer {layer} is out of range: hidden states are 0..{self.num_layers}")
        return self._head(hidden, norm=layer < self.num_layers)  # the last hidden state already went through the norm

    # -- incremental decoding ------------------------------------------------------------------------------
    def decoder(self, input_ids: torch.Tensor) -> Decoder | None:
        """A KV-cached decoder through FILE.decoder.onnx; None without one (callers recompute the prefix)."""
        if self.decoder_path is None:
            return None
        with self._decoder_lock:  # one session per backend, shared by every generation (run is thread-safe)
            if self._decoder_session is None:
                self._decoder_session = open_session(str(self.decoder_path), self.threads, self.decoder_path)
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
