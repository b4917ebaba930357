"""Path (or listed name) -> LoadedModel: a backend, its tokenizer and what it can show.

    >>> m = load_model("assets/models/bert")          # doctest: +SKIP
    >>> m.info.task, m.info.capabilities              # doctest: +SKIP
    ('pretraining', ('attention', 'hidden', 'lens', 'mlm', 'nsp'))

Rules: only safetensors weights are read (pickled `.bin`/`.pt` checkpoints are refused: unpickling can run
code); `trust_remote_code` is never set; nothing is fetched from a hub. Every model is loaded once per
process per (path, backend) and then shared read-only by all callers and threads.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from model import capabilities
from model.capabilities import VIEWS  # noqa: F401  (re-exported)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

if TYPE_CHECKING:  # importing this module must not import torch: the app's Models page draws without it
    from model.backends.base import Backend

# The seed types: described from their files alone (model.describe); every model type transformers knows loads.
SUPPORTED_TYPES = ("bert", "roberta", "albert", "distilbert", "gpt2", "lmscope-elmo")
DTYPES = ("float32", "bfloat16")  # what a model may be loaded in (--dtype; float32 unless asked)
PICKLE_WEIGHTS = ("pytorch_model.bin", "model.pt", "model.pth", "model.ckpt", "tf_model.h5", "flax_model.msgpack")

# What each task can show is VIEWS (model.capabilities, torch-free; `from model.load import VIEWS` keeps
# working); `unavailable` explains the rest.


class ModelLoadError(ValueError):
    """A model cannot be loaded; the message says why and what to do."""


@dataclass(frozen=True)
class ModelInfo:
    """Plain description of a loaded model (what the Models page and `lmscope models` show).

    task: "masked-lm", "causal-lm", "pretraining" (MLM + NSP/SOP), "encoder" (no head) or "elmo".
    capabilities: sorted view names from VIEWS; unavailable: view -> why not.
    """

    name: str
    path: str
    backend: str
    model_type: str
    architecture: str
    task: str
    num_layers: int
    num_heads: int
    hidden_size: int
    vocab_size: int
    max_positions: int | None
    num_parameters: int
    size_bytes: int
    capabilities: tuple[str, ...]
    unavailable: dict[str, str] = field(default_factory=dict)
    mask_token: str | None = None
    warnings: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


@dataclass
class LoadedModel:
    """A runnable model. Shared read-only between sessions: never mutate it."""

    info: ModelInfo
    backend: Backend
    tokenizer: Any  # a transformers fast tokenizer

    @property
    def name(self) -> str:
        return self.info.name

    def has(self, capability: str) -> bool:
        return capability in self.info.capabilities


# ---------------------------------------------------------------------------------------------------
# Validation of a directory before anything heavy runs.


def read_config(path: Path) -> dict[str, Any]:
    cfg_file = path / "config.json"
    if not path.exists():
        raise ModelLoadError(f"no such model: {path} (not a directory or file; `lmscope models` lists the known ones)")
    if not path.is_dir():
        raise ModelLoadError(f"{path} is a file, not a model directory (an ONNX model must end in .onnx)")
    if not cfg_file.is_file():
        raise ModelLoadError(f"{path} has no config.json: not a Hugging Face model directory")
    try:
        cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelLoadError(f"{cfg_file} is not valid JSON ({e})") from None
    if not isinstance(cfg, dict):
        raise ModelLoadError(f"{cfg_file} is not a JSON object")
    mt = cfg.get("model_type")
    if not isinstance(mt, str) or not mt:
        raise ModelLoadError(f"{cfg_file} has no model_type: not a Hugging Face model config")
    return cfg


def check_weights(path: Path) -> list[Path]:
    """The safetensors files of a model directory, validated; refuses pickled checkpoints."""
    files = sorted(path.glob("*.safetensors"))
    if not files:
        pickles = [p.name for p in path.iterdir() if p.name in PICKLE_WEIGHTS or p.suffix in (".bin", ".pt", ".pth", ".ckpt")]
        if pickles:
            raise ModelLoadError(
                f"{path} only has pickled weights ({', '.join(pickles)}); lmscope never unpickles files because "
                "that can run arbitrary code. If you trust the file, convert it once with: python -c \"from "
                "transformers import AutoModel as A; A.from_pretrained('" + str(path) + "', use_safetensors=False)"
                ".save_pretrained('" + str(path) + "-safetensors')\" (then copy the tokenizer files beside it)"
            )
        raise ModelLoadError(f"{path} has no model.safetensors")
    for f in files:
        _check_safetensors(f)
    return files


def _check_safetensors(f: Path) -> None:
    """Header sanity and length check without reading the tensors: a safetensors file is an 8-byte
    little-endian header length, a JSON header with each tensor's byte range, then the data."""
    size = f.stat().st_size
    bad = f"{f} is corrupt or truncated ({size} bytes)"
    with open(f, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise ModelLoadError(f"{bad}: no header")
        n = int.from_bytes(head, "little")
        if n <= 0 or 8 + n > size:
            raise ModelLoadError(f"{bad}: header length {n} does not fit the file")
        try:
            header = json.loads(fh.read(n).decode("utf-8"))
            end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
        except Exception:
            raise ModelLoadError(f"{bad}: unreadable header") from None
    if 8 + n + end != size:
        raise ModelLoadError(f"{bad}: the header promises {8 + n + end} bytes")


TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model")


def load_tokenizer(path: Path):
    from transformers import AutoTokenizer

    if not any((path / f).is_file() for f in TOKENIZER_FILES):
        raise ModelLoadError(f"{path} has no tokenizer files (expected one of: {', '.join(TOKENIZER_FILES)})")

    try:
        tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except Exception as e:
        raise ModelLoadError(f"cannot load the tokenizer in {path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    if not getattr(tok, "is_fast", False):
        raise ModelLoadError(f"the tokenizer in {path} is not a fast (Rust) tokenizer; lmscope needs character offsets")
    return tok


def dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.iterdir() if f.is_file())


def _load_transformers(path: Path, cfg: dict[str, Any], name: str, dtype: str = "float32") -> LoadedModel:
    from model import guard

    files = check_weights(path)
    try:  # before torch is even imported: weights that cannot fit in free memory
        file_params, file_bytes = guard.check_files(path, files, dtype, cfg)
    except guard.GuardError as e:
        raise ModelLoadError(str(e)) from None

    import torch
    import transformers

    from model import families
    from model.backends import torch_backend as tb

    try:
        arch, task, warnings = families.choose_architecture(cfg["model_type"], cfg.get("architectures"))
    except families.UnknownFamily as e:
        raise ModelLoadError(f"unknown model_type {cfg['model_type']!r} in {path / 'config.json'}; lmscope loads "
                             f"every model type transformers knows, and lmscope-elmo ({e})") from None
    cls = getattr(transformers, arch)
    try:
        config = cls.config_class.from_pretrained(str(path), local_files_only=True)
    except Exception as e:
        raise ModelLoadError(f"cannot read {path / 'config.json'}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    try:  # before anything is allocated: the config against the weights and against free memory
        guard.check_config(path, file_params, file_bytes, config, cls, dtype)
    except guard.GuardError as e:
        raise ModelLoadError(str(e)) from None
    tok = load_tokenizer(path)
    kw = dict(local_files_only=True, use_safetensors=True, dtype=getattr(torch, dtype), output_loading_info=True)
    record = True
    try:
        try:
            model, loading = cls.from_pretrained(str(path), attn_implementation=tb.IMPLEMENTATION, **kw)
        except (ValueError, KeyError):  # a class whose attention does not go through AttentionInterface
            model, loading = cls.from_pretrained(str(path), attn_implementation="eager", **kw)
            record = False
    except Exception as e:
        raise ModelLoadError(f"cannot load {path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    missing = [k for k in loading.get("missing_keys", []) if "position_ids" not in k]
    if missing:
        warnings.append(f"{len(missing)} weights were missing and are random (e.g. {missing[0]}): predictions from them mean nothing")
    emb = model.get_input_embeddings().num_embeddings
    if len(tok) > emb:
        raise ModelLoadError(
            f"tokenizer/model mismatch in {path}: the tokenizer has {len(tok)} tokens but the model's embedding has {emb} rows"
        )
    backend = tb.TorchBackend(model, arch, task=task, record_attention=record)
    _probe_attention(backend, tok)
    warnings += backend.probe_heads(_probe_ids(tok))
    if dtype != "float32":
        warnings.append(f"loaded in {dtype}: maps and predictions differ slightly from float32")

    caps, task = capabilities.transformers_capabilities(arch, backend.num_heads, backend.has_attention, task=task,
                                                        has_lm_head=backend.has_lm_head, has_lens=backend.has_lens)
    hidden = int(getattr(model.config, "hidden_size", 0) or getattr(model.config, "dim", 0) or getattr(model.config, "n_embd", 0))
    loaded = LoadedModel(
        info=model_info(name, path, "torch", cfg["model_type"], arch, task, backend, hidden,
                   sum(p.numel() for p in model.parameters()), dir_size(path), caps, tok, warnings),
        backend=backend,
        tokenizer=tok,
    )
    return _with_reasons(loaded)


def _with_reasons(loaded: LoadedModel) -> LoadedModel:
    """Add the backend's own reasons (why attention or the lens is missing) to `unavailable`."""
    reasons = {k: v for k, v in getattr(loaded.backend, "reasons", {}).items() if k not in loaded.info.capabilities}
    if not reasons:
        return loaded
    return replace(loaded, info=replace(loaded.info, unavailable={**loaded.info.unavailable, **reasons}))


def _probe_ids(tok):
    import torch

    return torch.tensor([tok("probe the head", verbose=False)["input_ids"]])


def _probe_attention(backend, tok) -> None:
    """Check that our recording attention sees every layer; otherwise fall back to eager outputs."""
    import torch

    ids = torch.tensor([tok("probe")["input_ids"]])
    if backend.record_attention:
        try:
            backend.forward(ids, attentions=True, hidden_states=False)
            return
        except Exception:  # recorded fewer layers than it has, or the lmscope implementation failed: eager
            backend.record_attention = False
            backend.model.set_attn_implementation("eager")
    try:  # eager attention with output_attentions: probabilities only
        out = backend.forward(ids, attentions=True, hidden_states=False)
        ok = out.attention is not None and len(out.attention) == backend.num_layers
    except Exception as e:
        ok, why = False, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    else:
        why = "its forward pass returns no attention weights"
    if not ok:
        if not backend.num_heads:
            why = "its config has no attention heads (a state-space or recurrent model?)"
        backend.has_attention = False
        backend.reasons["attention"] = (f"{backend.architecture}'s attention cannot be recorded ({why}); "
                                        "the views that need no attention still work")


def model_info(name, path, backend_kind, model_type, arch, task, backend, hidden, n_params, size, caps, tok, warnings) -> ModelInfo:
    unavailable = capabilities.unavailable_views(name, model_type, task, caps)
    return ModelInfo(
        name=name, path=str(path), backend=backend_kind, model_type=model_type, architecture=arch, task=task,
        num_layers=backend.num_layers, num_heads=backend.num_heads, hidden_size=hidden,
        vocab_size=backend.vocab_size, max_positions=backend.max_positions, num_parameters=int(n_params),
        size_bytes=int(size), capabilities=tuple(sorted(caps)), unavailable=unavailable,
        mask_token=getattr(tok, "mask_token", None), warnings=tuple(warnings),
    )


def _named(loaded: LoadedModel, name: str) -> LoadedModel:
    """A cached model described under the name this caller asked for (`demo/gpt2` and the path of the same
    folder are one model in memory): the same backend and tokenizer, the name and the reasons that quote it
    rebuilt. The first caller's name would otherwise stick to whoever asks next."""
    info = loaded.info
    if info.name == name:
        return loaded
    caps = set(info.capabilities)
    unavailable = capabilities.unavailable_views(name, info.model_type, info.task, caps)
    if info.backend == "onnx":
        from model.backends.onnx_backend import graph_reasons

        unavailable.update(graph_reasons(loaded.backend, info.task, name, caps))
    unavailable.update({k: v for k, v in getattr(loaded.backend, "reasons", {}).items() if k not in caps})
    return LoadedModel(info=replace(info, name=name, unavailable=unavailable), backend=loaded.backend,
                       tokenizer=loaded.tokenizer)


def _load_elmo(path: Path, cfg: dict[str, Any], name: str) -> LoadedModel:
    from model.backends.elmo_backend import load_elmo

    check_weights(path)
    try:
        backend, tok = load_elmo(path)
    except ModelLoadError:
        raise
    except Exception as e:
        raise ModelLoadError(f"cannot load ELMo model {path}: {e}") from None
    caps = set(capabilities.ELMO_CAPABILITIES)
    n_params = sum(p.numel() for p in backend.module.parameters()) if hasattr(backend, "module") else 0
    return LoadedModel(
        info=model_info(name, path, "elmo", "lmscope-elmo", "ElmoLM", "elmo", backend, int(cfg.get("hidden_size", 0)),
                   n_params, dir_size(path), caps, tok, []),
        backend=backend, tokenizer=tok,
    )


def _load_onnx(path: Path, name: str) -> LoadedModel:
    try:
        from model.backends.onnx_backend import load_onnx
    except ImportError:
        raise ModelLoadError("ONNX models are not supported in this build") from None
    return load_onnx(path, name)


# ---------------------------------------------------------------------------------------------------
# The process-wide cache.

# Least recently used first. Bounded: the app's checkpoint slider can visit many checkpoints, and each
# model stays alive for as long as a caller still holds it, so dropping the oldest entry is always safe.
_CACHE: "OrderedDict[tuple[str, str], LoadedModel]" = OrderedDict()
MAX_LOADED = int(os.environ.get("LMSCOPE_MAX_LOADED_MODELS", 8))
_GLOBAL = threading.Lock()  # guards _CACHE's order; never held while waiting for another lock
LOAD_COUNT: dict[tuple[str, str], int] = {}  # how often each key was really loaded (tests, load test)
# One model load at a time in the process (models of different keys included): transformers resolves its
# classes through lazy modules that are not thread-safe, and concurrent FIRST loads of different
# architectures fail with `AttributeError: module 'transformers' has no attribute 'BertForMaskedLM'`
# (measured: 5 of 6 concurrent first loads in a fresh process). Loads happen once per model and process.
IMPORT_LOCK = threading.RLock()
_log = logging.getLogger("lmscope.load")
# Set once torch, transformers and the torch backend are fully imported (by `import_engine`, under
# IMPORT_LOCK). The app's warm-up thread holds IMPORT_LOCK from before the server starts until its engine
# import and first model load are done, and calls `import_engine` last: until then every other thread that
# asks for the engine waits on the lock instead of reading half-imported modules.
_ENGINE_READY = threading.Event()


def import_engine() -> None:
    """Import torch, transformers and the torch backend once per process, under IMPORT_LOCK; returns at
    once when that is done, else waits for whoever holds the lock (e.g. the app's warm-up). Code that may
    run while a warm-up is in progress reaches the engine only after this (app.common.engine)."""
    if _ENGINE_READY.is_set():
        return
    with IMPORT_LOCK:
        if _ENGINE_READY.is_set():
            return
        import torch  # noqa: F401
        import transformers  # noqa: F401

        from model.backends import torch_backend  # noqa: F401  (imports transformers' modeling code)
        _ENGINE_READY.set()


def engine_imported() -> bool:
    """Whether `import_engine` has completed in this process."""
    return _ENGINE_READY.is_set()


# Torch threads per server process. One: on 2 cores `lmscope bench` measured inspection on a 12x12 model
# 1.3-1.8x faster on two threads than on one with the machine otherwise idle, but 2.3-13x SLOWER whenever
# anything else ran on the second core (a training job, another session, the browser) -- the normal case
# for a classroom server, where sessions already run side by side on separate threads. A single user on
# an idle machine can set LMSCOPE_TORCH_THREADS=2.
SERVER_TORCH_THREADS = 1


def configure_server_threads() -> int:
    """Set torch's intra-op threads for a server process (the app); returns the number set."""
    import torch

    n = max(1, int(os.environ.get("LMSCOPE_TORCH_THREADS", SERVER_TORCH_THREADS)))
    torch.set_num_threads(n)
    return n


def allowed_roots() -> list[Path]:
    """Directories the app may load models from: the demo models, lmscope's runs, the HF cache, and
    anything listed in LMSCOPE_MODEL_ROOTS (os.pathsep-separated). The CLI may load any path it is given."""
    from model.registry import demo_dir, hf_hub_cache, runs_dir

    roots = [demo_dir(), runs_dir(), hf_hub_cache()]
    roots += [Path(p) for p in os.environ.get("LMSCOPE_MODEL_ROOTS", "").split(os.pathsep) if p]
    return [r.expanduser().resolve() for r in roots]


def check_allowed(path: Path) -> None:
    """Refuse a path that resolves (after `..` and symlinks) outside every allowed root."""
    real = Path(os.path.realpath(path))
    if not any(real == r or r in real.parents for r in allowed_roots()):
        raise ModelLoadError(
            f"{path} is outside the model folders this server may read (demo models, runs, the Hugging Face "
            "cache, LMSCOPE_MODEL_ROOTS)"
        )


def resolve(ref: str | os.PathLike, restrict: bool = False) -> tuple[Path, str]:
    """A path or a listed model name -> (path, display name). With `restrict`, a path must lie inside
    `allowed_roots()` (the app sets this; a path typed on the command line is the user's own choice)."""
    from model.registry import find

    ref = str(ref).strip()
    if not ref:
        raise ModelLoadError("no model given")
    entry = find(ref, exact=True)
    if entry is not None:
        return Path(entry.path), entry.name
    p = Path(ref).expanduser()
    if not p.exists():
        entry = find(ref)
        if entry is not None:
            return Path(entry.path), entry.name
        raise ModelLoadError(f"no such model: {ref!r} (neither a path nor a listed model; `lmscope models` lists them)")
    if restrict:
        check_allowed(p)
    p = p.resolve()
    return p, p.name


def load_model(ref: str | os.PathLike, backend: str = "auto", restrict: bool = False,
               dtype: str = "float32") -> LoadedModel:
    """Load (once per process) and return a shared, read-only model. `restrict`: see `resolve`. `dtype`:
    float32, or bfloat16 for a transformers model that does not fit in free memory in float32 (the load
    guard, model.guard, says when)."""
    path, name = resolve(ref, restrict)
    kind = "onnx" if path.suffix == ".onnx" else "torch"
    if backend not in ("auto", kind):
        raise ModelLoadError(f"{path} cannot run on the {backend} backend (it is a {kind} model)")
    if dtype not in DTYPES:
        raise ModelLoadError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    key = (str(path), kind) if dtype == "float32" else (str(path), f"{kind}-{dtype}")
    hit = _CACHE.get(key)
    if hit is not None:
        with _GLOBAL:
            if key in _CACHE:
                _CACHE.move_to_end(key)
        return _named(hit, name)
    # IMPORT_LOCK is the outermost lock (one loader at a time; callers of the same key wait here and then
    # share). It must come first: the app's warm-up holds it across its own load_model call, and a caller
    # holding any other lock while waiting for it could deadlock with that warm-up (it did, with a
    # per-key lock taken first).
    with IMPORT_LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            return _named(hit, name)
        t0 = time.perf_counter()
        if kind == "onnx":
            loaded = _load_onnx(path, name)
        else:
            cfg = read_config(path)
            if cfg["model_type"] == "lmscope-elmo":
                loaded = _load_elmo(path, cfg, name)
            else:
                loaded = _load_transformers(path, cfg, name, dtype)
        with _GLOBAL:
            _CACHE[key] = loaded  # only a fully loaded model enters the cache
            while len(_CACHE) > max(1, MAX_LOADED):
                _CACHE.popitem(last=False)
        LOAD_COUNT[key] = LOAD_COUNT.get(key, 0) + 1
        # the app logs this (the load test counts these lines); the CLI leaves the logger unconfigured
        _log.info("loaded model %s (%s) in %.2f s, load #%d of it in this process",
                  key[0], kind, time.perf_counter() - t0, LOAD_COUNT[key])
        return loaded
