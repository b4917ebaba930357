"""Path (or listed name) -> LoadedModel: a backend, its tokenizer and what it can show.

    >>> m = load_model("assets/models/bert")          # doctest: +SKIP
    >>> m.info.task, m.info.capabilities              # doctest: +SKIP
    ('pretraining', ('attention', 'hidden', 'lens', 'mlm', 'nsp'))

Rules: only safetensors weights are read (model.modelfiles refuses pickled checkpoints); `trust_remote_code`
is never set; nothing is fetched from a hub. Every model is loaded once per process per (path, backend) and
then shared read-only by all callers and threads. Importing this module imports no torch (the app's Models
page draws without it); the loaders import it when they run.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path
from typing import Any

from model import capabilities
from model.errors import ModelLoadError, first_line
from model.modelfiles import check_weights, dir_size, load_tokenizer, read_config
from model.modelinfo import LoadedModel, model_info
from model.registry import resolve

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DTYPES = ("float32", "bfloat16")  # what a model may be loaded in (--dtype; float32 unless asked)


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
        raise ModelLoadError(f"cannot read {path / 'config.json'}: {first_line(e)}") from None
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
        raise ModelLoadError(f"cannot load {path}: {first_line(e)}") from None
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
        info=model_info(name=name, path=path, backend_kind="torch", model_type=cfg["model_type"], architecture=arch,
                        task=task, backend=backend, hidden_size=hidden,
                        num_parameters=sum(p.numel() for p in model.parameters()), size_bytes=dir_size(path),
                        capabilities=caps, tokenizer=tok, warnings=warnings),
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
        ok, why = False, f"{type(e).__name__}: {first_line(e) if str(e).strip() else ''}"
    else:
        why = "its forward pass returns no attention weights"
    if not ok:
        if not backend.num_heads:
            why = "its config has no attention heads (a state-space or recurrent model?)"
        backend.has_attention = False
        backend.reasons["attention"] = (f"{backend.architecture}'s attention cannot be recorded ({why}); "
                                        "the views that need no attention still work")


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
        from model.backends.onnx_load import graph_reasons

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
        info=model_info(name=name, path=path, backend_kind="elmo", model_type="lmscope-elmo", architecture="ElmoLM",
                        task="elmo", backend=backend, hidden_size=int(cfg.get("hidden_size", 0)),
                        num_parameters=n_params, size_bytes=dir_size(path), capabilities=caps, tokenizer=tok,
                        warnings=[]),
        backend=backend, tokenizer=tok,
    )


def _load_onnx(path: Path, name: str) -> LoadedModel:
    try:
        from model.backends.onnx_load import load_onnx
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


def load_model(ref: str | os.PathLike, backend: str = "auto", restrict: bool = False,
               dtype: str = "float32") -> LoadedModel:
    """Load (once per process) and return a shared, read-only model. `restrict`: see `resolve`. `dtype`:
    float32, or bfloat16 for a transformers model that does not fit in free memory in float32 (the load
    guard, model.guard, says when)."""
    path, name = resolve(ref, restrict)
    kind = _kind(path)
    if backend not in ("auto", kind):
        raise ModelLoadError(f"{path} cannot run on the {backend} backend (it is a {kind} model)")
    if dtype not in DTYPES:
        raise ModelLoadError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    key = _cache_key(path, dtype)
    hit = _CACHE.get(key)
    if hit is not None:
        with _GLOBAL:
            if key in _CACHE:
                _CACHE.move_to_end(key)
        return _named(hit, name)
    # IMPORT_LOCK is the outermost lock (one loader at a time; callers of the same key wait here and then
    # share). It must come first: the app's warm-up holds it across its own load_model call, and a caller
    # holding any other lock while waiting for it could deadlock with that warm-up.
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


def is_loaded(ref: str | os.PathLike, restrict: bool = False) -> bool:
    """Whether `load_model(ref, restrict=restrict)` would return at once from the process-wide cache."""
    try:
        path, _ = resolve(ref, restrict)
    except ModelLoadError:
        return False
    return _cache_key(path) in _CACHE


def _kind(path: Path) -> str:
    return "onnx" if path.suffix == ".onnx" else "torch"


def _cache_key(path: Path, dtype: str = "float32") -> tuple[str, str]:
    """(resolved path, backend kind), with the dtype appended to the kind when it is not float32."""
    kind = _kind(path)
    return (str(path), kind) if dtype == "float32" else (str(path), f"{kind}-{dtype}")
