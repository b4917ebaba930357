"""Export a transformers model to ONNX that keeps its attention maps, hidden states and LM head.

    >>> r = export_onnx("assets/models/bert", Path("out/bert.onnx"))       # doctest: +SKIP
    >>> r.parity["attentions"] <= r.tolerance                              # doctest: +SKIP
    True
    $ lmscope export-onnx assets/models/bert --out out/bert.onnx [--opset 17] [--fp16]

What lands beside FILE.onnx (all written under temporary names in the same directory, checked, then
renamed; a failed or interrupted export leaves none of them behind, and the temp directory of a killed one
is removed by the next export to the same file):

    FILE.onnx          inputs  input_ids, attention_mask (+ token_type_ids for BERT / ALBERT): (batch, seq) int64,
                               both axes dynamic
                       outputs logits (batch, seq, vocab)    [last_hidden_state (batch, seq, hidden) for a bare encoder]
                               attentions (layer, batch, head, query, key)
                               hidden_states (layer + 1, batch, seq, hidden), row 0 = embedding output
                               pair_logits (batch, 2)         [NSP / SOP heads only]
    FILE.head.onnx     the LM head alone: hidden (batch, seq, hidden) [+ apply_norm, a bool scalar, for GPT-2's
                       final ln_f] -> logits (batch, seq, vocab). The onnx backend uses it for the logit lens and to
                       compute logits only at the positions a view needs, as the torch backend does (a whole-
                       sequence LM head doubles the cost of a 128-token MiniLM inspection).
    FILE.decoder.onnx  GPT-2 language models only: generation with a key/value cache. input_ids (batch, new),
                       past_keys and past_values (layer, batch, head, past, dim) -> logits (batch, vocab) after
                       the last new token, present_keys and present_values (layer, batch, head, past + new, dim).
                       One graph runs the prompt (past = 0) and then one token per step, so generating n tokens
                       costs n positions instead of n prefixes (the onnx backend's `Decoder`).
    FILE.lmscope.json  metadata: architecture, task, output names, sizes, versions, parity measured at export
    tokenizer.json ... the tokenizer (`save_pretrained` into the same directory)

Exporter: `torch.onnx.export(dynamo=False)` (TorchScript tracing). Measured here: 0.2-1.2 s per tiny model and
3 s for MiniLM, against ~10 s per model for `dynamo=True`, and the traced graph ran faster in onnxruntime
(see /work/shared/notes/onnx-export.md). The model is traced on a padded batch, so the attention mask
arithmetic is part of the graph; dynamic axes keep batch and sequence free.

The CHECK before anything is renamed: onnxruntime runs the graphs on one row and on a padded batch of three,
and every output (real rows only) must equal the traced torch module's within TOLERANCE, measured as
max |onnx - torch| / max(1, max |torch|) (absolute for attention probabilities and O(1) logits; relative for
the large logits and hidden states of real GPT-2 checkpoints).

fp16 (`--fp16`): weights are stored as float16 and cast to float32 inside the graph (ONNX Cast nodes), so
onnxruntime computes in float32 and the file is about half the size. The graph must then equal, within
TOLERANCE, torch running the same fp16-rounded weights; its drift from the original float32 model is
measured too and must stay under FP16_DRIFT (else the export is refused).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from model.capabilities import ONNX_FORMAT
from model.errors import ExportError
from model.load import LoadedModel, ModelLoadError

LMSCOPE_VERSION = "0.1.0"
FORMAT = ONNX_FORMAT  # `format` field of FILE.lmscope.json
EXPORTER = "torch.onnx.export(dynamo=False)"
OPSETS = range(14, 21)  # 14: first opset the tracer exports these models with; 20: the tracer's newest
TOLERANCE = 1e-4  # max |onnx - torch| / max(1, max |torch|); measured here: <= 2e-7 on the tiny models, 1e-5 MiniLM
# fp16 weights vs the original float32 model: attention probabilities and hidden states move by the weight
# rounding (2^-11 relative per weight); beyond these the maps or predictions would visibly differ.
FP16_DRIFT = {"attentions": 1e-2, "logits": 5e-2, "hidden_states": 5e-2, "pair_logits": 5e-2}
FP16_MIN_ELEMENTS = 1024  # only weight matrices and vectors go to fp16; small constants stay exact float32
MAX_PROTO_BYTES = 2 * 10**9 - 2**24  # a single ONNX protobuf must stay under 2 GB (no external-data files here)

# Sample texts for tracing and the parity check; the mask word is swapped for the tokenizer's mask token.
TEXTS = [
    ("the quick brown fox jumps over the lazy dog.", "a student types a sentence."),
    ("hello world", None),
    ("attention heads look at other tokens in the sentence, and the dogs near the cat run.", "the cat sleeps."),
]
MASK_WORD = "fox"


# ---------------------------------------------------------------------------------------------------
# What the graphs compute.


class GraphModule(nn.Module):
    """The exported graph: a transformers model whose forward returns plain tensors.

    (input_ids, attention_mask[, token_type_ids]) -> (logits | last_hidden_state, [attentions],
    hidden_states, [pair_logits]) with attentions stacked (layer, batch, head, query, key) and hidden
    states stacked (layer + 1, batch, seq, hidden).
    """

    def __init__(self, model: nn.Module, spec: "ExportSpec"):
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

    Models whose lens needs the final norm first (GPT-2: ln_f, already applied to the last hidden state) take
    `apply_norm`, a bool scalar: True for intermediate layers, False for the last one."""

    def __init__(self, model: nn.Module, architecture: str):
        super().__init__()
        from model.backends import torch_backend as tb

        self.model = model
        self.head = tb.MLM_HEADS.get(architecture) or tb.CAUSAL_HEADS[architecture]
        self.norm = tb.LENS_NORMS[architecture](model) if architecture in tb.LENS_NORMS else None

    def forward(self, hidden, apply_norm=None):
        if self.norm is not None:
            hidden = torch.where(apply_norm, self.norm(hidden), hidden)  # (batch, seq, hidden)
        return self.head(self.model, hidden)  # (batch, seq, vocab)


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


def spec_for(architecture: str, model_type: str, attentions: bool = True) -> ExportSpec:
    from model.backends import torch_backend as tb

    if architecture in tb.MLM_HEADS:
        pair_kind = tb.PAIR_HEADS.get(architecture, (None, None))[0]
        task = "pretraining" if pair_kind else "masked-lm"
    elif architecture in tb.CAUSAL_HEADS:
        task, pair_kind = "causal-lm", None
    else:
        task, pair_kind = "encoder", None
    causal = task == "causal-lm" or architecture == "GPT2Model"
    return ExportSpec(architecture, model_type, task, pair_kind, causal, model_type in ("bert", "albert"), attentions)


DECODER_ARCHITECTURES = ("GPT2LMHeadModel",)


class DecoderModule(nn.Module):
    """GPT-2 generation with a key/value cache, as a function of plain tensors (FILE.decoder.onnx):

        (input_ids (batch, new), past_keys, past_values (layer, batch, head, past, dim))
        -> (logits (batch, vocab) after the last new token, present_keys, present_values
            (layer, batch, head, past + new, dim))

    Generation never pads its rows, so the mask is causal over past + new positions and the positions
    continue from `past`; both are computed from the input shapes inside the graph (a traced Python int
    would freeze them), so one graph serves the prompt (past = 0) and every later step. The cache goes
    in and out as stacked tensors; inside, the model gets transformers' own DynamicCache."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids, past_keys, past_values):
        from transformers import DynamicCache

        cache = DynamicCache()
        for layer in range(self.model.config.n_layer):
            cache.update(past_keys[layer], past_values[layer], layer)
        batch, new, past = input_ids.shape[0], input_ids.shape[1], past_keys.shape[3]
        positions = torch.arange(new) + past  # (new,)
        allowed = torch.arange(past + new)[None, :] <= positions[:, None]  # (new, past + new)
        mask = torch.zeros(allowed.shape).masked_fill(~allowed, torch.finfo(torch.float32).min)
        out = self.model(input_ids=input_ids, past_key_values=cache, use_cache=True,
                         attention_mask=mask[None, None].expand(batch, 1, -1, -1),  # (batch, 1, new, past + new)
                         position_ids=positions[None].expand(batch, -1), logits_to_keep=1, return_dict=True)
        layers = out.past_key_values.layers
        return (out.logits[:, -1],  # (batch, vocab)
                torch.stack([l.keys for l in layers]),  # (layer, batch, head, past + new, dim)
                torch.stack([l.values for l in layers]))


# ---------------------------------------------------------------------------------------------------
# The report.


@dataclass(frozen=True)
class ExportReport:
    """What `export_onnx` wrote and how closely onnxruntime reproduced torch.

    parity: output name -> max |onnx - torch| / max(1, max |torch|) over the sample inputs (real rows only);
    fp16_drift: the same against the original float32 model, for fp16 exports (else empty).
    """

    path: Path
    head_path: Path | None
    decoder_path: Path | None  # FILE.decoder.onnx (GPT-2 language models)
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


# ---------------------------------------------------------------------------------------------------
# Export.


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
    model, arch = _fresh_model(path, cfg)
    spec = spec_for(arch, cfg["model_type"], attentions)
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

        batches = sample_batches(tok, spec, _max_tokens(model, cfg["model_type"]))
        graph, head = GraphModule(model, spec).eval(), (HeadModule(model, arch).eval() if spec.has_head else None)
        reference = _run_torch(graph, head, spec, batches)
        if fp16:
            _round_weights_to_fp16(model)
            fp32_reference, reference = reference, _run_torch(graph, head, spec, batches)

        _trace(graph, batches[-1], spec, tmp / "model.onnx", opset)
        if head is not None:
            _trace_head(head, batches[-1], tmp / "head.onnx", opset)
        dec = DecoderModule(model).eval() if decoder and spec.architecture in DECODER_ARCHITECTURES else None
        if dec is not None:
            _trace_decoder(dec, _decoder_samples(batches)[-1], tmp / "decoder.onnx", opset)
        if fp16:
            for f in (tmp / "model.onnx", tmp / "head.onnx", tmp / "decoder.onnx"):
                if f.exists():
                    _store_weights_fp16(f)

        got = _run_onnx(tmp / "model.onnx", tmp / "head.onnx" if head is not None else None, spec, batches)
        parity = _compare(got, reference, batches)
        if dec is not None:
            parity["decoder"] = _check_decoder(dec, tmp / "decoder.onnx", batches, reference)
        bad = {k: v for k, v in parity.items() if not v <= TOLERANCE}
        if bad:
            raise ExportError("onnxruntime does not reproduce torch within %.0e (%s); nothing was written"
                              % (TOLERANCE, ", ".join(f"{k} {v:.1e}" for k, v in bad.items())))
        drift: dict[str, float] = {}
        if fp16:
            drift = _compare(got, fp32_reference, batches)
            over = {k: v for k, v in drift.items() if k in FP16_DRIFT and not v <= FP16_DRIFT[k]}
            if over:
                raise ExportError("fp16 weights move this model's outputs too far from float32 ("
                                  + ", ".join(f"{k} {v:.1e} > {FP16_DRIFT[k]:.0e}" for k, v in over.items())
                                  + "); export without --fp16")

        meta = _metadata(spec, model, cfg, tok, path, opset, fp16, parity, drift, tmp, head_out, decoder_out, len(batches))
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


EXPORTABLE_TYPES = ("bert", "roberta", "albert", "distilbert", "gpt2")  # the families whose export parity is tested


def _read_source(path: Path):
    from model.load import IMPORT_LOCK, load_tokenizer, check_weights, read_config

    cfg = read_config(path)
    if cfg["model_type"] == "lmscope-elmo":
        raise ExportError(f"{path} is an ELMo model; ONNX export covers the transformer architectures only")
    if cfg["model_type"] not in EXPORTABLE_TYPES:
        raise ExportError(f"{path} is a {cfg['model_type']} model; ONNX export (with attention outputs, checked "
                          f"against torch) covers {', '.join(EXPORTABLE_TYPES)} so far: inspect it on the torch backend")
    check_weights(path)
    with IMPORT_LOCK:
        return cfg, load_tokenizer(path)


def _fresh_model(path: Path, cfg: dict[str, Any]) -> tuple[nn.Module, str]:
    """A new eager-attention instance (never the loader's shared model: tracing and fp16 rounding mutate it)."""
    import transformers

    from model.backends import torch_backend as tb

    archs = cfg.get("architectures") or []
    arch = next((a for a in archs if a in tb.SUPPORTED), None)
    if arch is None:
        arch = {"bert": "BertModel", "roberta": "RobertaModel", "albert": "AlbertModel",
                "distilbert": "DistilBertModel", "gpt2": "GPT2Model"}[cfg["model_type"]]
    from model.load import IMPORT_LOCK

    try:
        with IMPORT_LOCK:  # transformers' lazy class lookup is not thread-safe (see model.load)
            model = getattr(transformers, arch).from_pretrained(
                str(path), local_files_only=True, use_safetensors=True, dtype=torch.float32, attn_implementation="eager")
    except Exception as e:
        raise ModelLoadError(f"cannot load {path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    return model.eval(), arch


def _max_tokens(model: nn.Module, model_type: str) -> int:
    cfg = model.config
    n = getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None) or 512
    return n - 2 if model_type == "roberta" else n  # RoBERTa's positions start after its padding index


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


def sample_batches(tok, spec: ExportSpec, max_len: int) -> list[dict[str, torch.Tensor]]:
    """Two sample inputs: one row, and a right-padded batch of three rows of different lengths.
    Each is {input_ids, attention_mask[, token_type_ids]}: (batch, seq) int64."""
    mask = tok.mask_token if spec.task in ("masked-lm", "pretraining") else None
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0

    def row(a: str, b: str | None) -> tuple[list[int], list[int]]:
        if mask:
            a = a.replace(MASK_WORD, mask)
        enc = tok(a, b, truncation=True, max_length=max_len) if (b and spec.segments) else \
            tok(a + (" " + b if b else ""), truncation=True, max_length=max_len)
        ids = enc["input_ids"]
        return ids, enc.get("token_type_ids") or [0] * len(ids)

    def batch(pairs) -> dict[str, torch.Tensor]:
        rows = [row(a, b) for a, b in pairs]
        n = max(len(ids) for ids, _ in rows)
        b = {"input_ids": torch.tensor([ids + [pad] * (n - len(ids)) for ids, _ in rows]),
             "attention_mask": torch.tensor([[1] * len(ids) + [0] * (n - len(ids)) for ids, _ in rows])}
        if spec.segments:
            b["token_type_ids"] = torch.tensor([tt + [0] * (n - len(tt)) for _, tt in rows])
        return b

    return [batch(TEXTS[:1]), batch(TEXTS)]


def _run_torch(graph: GraphModule, head: HeadModule | None, spec: ExportSpec, batches) -> list[dict[str, torch.Tensor]]:
    """The reference: the traced module itself, plus the LM head on the last and a middle hidden state."""
    results = []
    with torch.inference_mode():
        for b in batches:
            r = dict(zip(spec.outputs, graph(*[b[k] for k in spec.inputs])))
            if head is not None:
                r.update(_head_outputs(lambda h, norm: head(h, torch.tensor(norm)), r["hidden_states"], head.norm is not None))
            results.append(r)
    return results


def _head_outputs(run, hidden_states, has_norm: bool) -> dict[str, Any]:
    """The head graph's two uses: logits from the last hidden state, and the lens on a middle layer."""
    mid = hidden_states.shape[0] // 2
    return {"head": run(hidden_states[-1], False), "lens": run(hidden_states[mid], has_norm)}


def _trace(graph: GraphModule, batch, spec: ExportSpec, f: Path, opset: int) -> None:
    dynamic = {k: {0: "batch", 1: "seq"} for k in spec.inputs}
    dynamic.update({
        "logits": {0: "batch", 1: "seq"}, "last_hidden_state": {0: "batch", 1: "seq"},
        "attentions": {1: "batch", 3: "seq", 4: "seq"}, "hidden_states": {1: "batch", 2: "seq"}, "pair_logits": {0: "batch"},
    })
    dynamic = {k: v for k, v in dynamic.items() if k in spec.inputs or k in spec.outputs}
    _quiet_export(graph, tuple(batch[k] for k in spec.inputs), f, spec.inputs, spec.outputs, dynamic, opset)


def _trace_head(head: HeadModule, batch, f: Path, opset: int) -> None:
    with torch.no_grad():  # not inference_mode: the tracer cannot use inference tensors
        hidden = head.model.base_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    names = ["hidden"] + (["apply_norm"] if head.norm is not None else [])
    args = (hidden,) + ((torch.tensor(True),) if head.norm is not None else ())
    _quiet_export(head, args, f, names, ["logits"], {"hidden": {0: "batch", 1: "seq"}, "logits": {0: "batch", 1: "seq"}}, opset)


def _decoder_samples(batches) -> list[torch.Tensor]:
    """Unpadded (batch, n) ids to check the decoder on: the one-row sample, and the three-row sample cut to
    its shortest row (generation never pads)."""
    b = batches[-1]
    return [batches[0]["input_ids"], b["input_ids"][:, : int(b["attention_mask"].sum(1).min())]]


def _decode(run, ids: torch.Tensor, empty) -> dict[str, torch.Tensor]:
    """The two kinds of call generation makes: the prompt but its last token with an empty cache, then
    that token with the cache it returned. run(ids, keys, values) -> (logits, keys, values)."""
    first, keys, values = run(ids[:, :-1], empty(ids.shape[0]), empty(ids.shape[0]))
    last, keys, values = run(ids[:, -1:], keys, values)
    return {"prompt": first, "step": last, "present_keys": keys, "present_values": values}


def _empty_cache(model: nn.Module):
    c = model.config
    return lambda batch: torch.zeros(c.n_layer, batch, c.n_head, 0, c.n_embd // c.n_head)  # (layer, batch, head, 0, dim)


def _trace_decoder(dec: DecoderModule, ids: torch.Tensor, f: Path, opset: int) -> None:
    """Traced mid-generation (a cache of n - 2 positions, two new tokens), so neither length is special."""
    with torch.no_grad():
        _, keys, values = dec(ids[:, :-2], *[_empty_cache(dec.model)(ids.shape[0])] * 2)
    dynamic = {"input_ids": {0: "batch", 1: "new"}, "past_keys": {1: "batch", 3: "past"},
               "past_values": {1: "batch", 3: "past"}, "logits": {0: "batch"},
               "present_keys": {1: "batch", 3: "total"}, "present_values": {1: "batch", 3: "total"}}
    _quiet_export(dec, (ids[:, -2:], keys, values), f, ["input_ids", "past_keys", "past_values"],
                  ["logits", "present_keys", "present_values"], dynamic, opset)


def _check_decoder(dec: DecoderModule, f: Path, batches, reference) -> float:
    """max relative error of FILE.decoder.onnx: against the torch module on the same calls, and its logits
    after the last token against the full graph's torch logits there (the same model, computed twice)."""
    empty = _empty_cache(dec.model)
    sess = _session(f)

    def run_torch(ids, keys, values):
        with torch.inference_mode():
            return dec(ids, keys, values)

    def run_onnx(ids, keys, values):
        outs = sess.run(None, {"input_ids": ids.numpy(), "past_keys": keys.numpy(), "past_values": values.numpy()})
        return [torch.from_numpy(o) for o in outs]

    def rel(got: torch.Tensor, want: torch.Tensor) -> float:
        return float((got - want).abs().max() / max(1.0, float(want.abs().max())))

    err = 0.0
    for ids, ref in zip(_decoder_samples(batches), reference):
        want, got = _decode(run_torch, ids, empty), _decode(run_onnx, ids, empty)
        err = max([err, rel(got["step"], ref["logits"][: ids.shape[0], ids.shape[1] - 1])]
                  + [rel(got[k], want[k]) for k in want])
    return err


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


def _round_weights_to_fp16(model: nn.Module) -> None:
    """Round every float32 parameter to the nearest float16 value (kept as float32), in place."""
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())


def _store_weights_fp16(f: Path) -> None:
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


def _session(f: Path, threads: int = 1):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    return ort.InferenceSession(str(f), so, providers=["CPUExecutionProvider"])


def _run_onnx(main: Path, head: Path | None, spec: ExportSpec, batches) -> list[dict[str, torch.Tensor]]:
    sess = _session(main)
    head_sess = _session(head) if head is not None else None
    results = []
    for b in batches:
        outs = sess.run(spec.outputs, {k: b[k].numpy() for k in spec.inputs})
        r = {k: torch.from_numpy(v) for k, v in zip(spec.outputs, outs)}
        if head_sess is not None:
            def run(h, norm):
                feed = {"hidden": h.numpy()}
                if len(head_sess.get_inputs()) > 1:
                    feed["apply_norm"] = np.array(norm)
                return torch.from_numpy(head_sess.run(["logits"], feed)[0])
            r.update(_head_outputs(run, r["hidden_states"], len(head_sess.get_inputs()) > 1))
        results.append(r)
    return results


def _compare(got, want, batches) -> dict[str, float]:
    """Output name -> max |got - want| / max(1, max |want|) over all batches, real positions only."""
    err: dict[str, float] = {}
    for g, w, b in zip(got, want, batches):
        real = b["attention_mask"].bool()  # (batch, seq)
        for k, ref in w.items():
            x = g[k]
            if k == "attentions":  # (layer, batch, head, query, key): real query rows
                sel = real[None, :, None, :].expand(ref.shape[:4])
                d, r = (x - ref).abs()[sel], ref[sel]
            elif k == "hidden_states":  # (layer + 1, batch, seq, hidden)
                sel = real[None].expand(ref.shape[:3])
                d, r = (x - ref).abs()[sel], ref[sel]
            elif k == "pair_logits":
                d, r = (x - ref).abs(), ref
            else:  # (batch, seq, ...)
                d, r = (x - ref).abs()[real], ref[real]
            e = float(d.max() / max(1.0, float(r.abs().max())))
            err[k] = max(err.get(k, 0.0), e)
    return err


def _metadata(spec, model, cfg, tok, path, opset, fp16, parity, drift, tmp, head_out, decoder_out, n_batches) -> dict[str, Any]:
    import onnxruntime
    import transformers

    from model.backends.torch_backend import LENS_NORMS

    has_norm = spec.architecture in LENS_NORMS
    mc = model.config
    return {
        "format": FORMAT,
        "lmscope_version": LMSCOPE_VERSION,
        "architecture": spec.architecture,
        "model_type": spec.model_type,
        "task": spec.task,
        "pair_kind": spec.pair_kind,
        "inputs": spec.inputs,
        "outputs": spec.outputs,
        "head": None if not spec.has_head else {
            "file": head_out.name, "bytes": (tmp / "head.onnx").stat().st_size,
            "inputs": ["hidden"] + (["apply_norm"] if has_norm else []), "outputs": ["logits"]},
        "decoder": None if not (tmp / "decoder.onnx").exists() else {
            "file": decoder_out.name, "bytes": (tmp / "decoder.onnx").stat().st_size,
            "inputs": ["input_ids", "past_keys", "past_values"], "outputs": ["logits", "present_keys", "present_values"]},
        "onnx_bytes": (tmp / "model.onnx").stat().st_size,
        "num_layers": int(getattr(mc, "num_hidden_layers", 0) or getattr(mc, "n_layers", 0) or getattr(mc, "n_layer", 0)),
        "num_heads": int(getattr(mc, "num_attention_heads", 0) or getattr(mc, "n_heads", 0) or getattr(mc, "n_head", 0)),
        "hidden_size": int(getattr(mc, "hidden_size", 0) or getattr(mc, "dim", 0) or getattr(mc, "n_embd", 0)),
        "vocab_size": int(mc.vocab_size),
        "max_positions": getattr(mc, "max_position_embeddings", None) or getattr(mc, "n_positions", None),
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
