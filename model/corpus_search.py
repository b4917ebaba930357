"""Corpus search (exBERT): the tokens of a corpus whose hidden states at a layer are nearest to a selected token's.

    index = build_index(model, textset)               # once: every layer's states, kept under runs/search/
    hits = search(index, query_vector, layer, k=10)   # exact top-k, cosine or L2, numpy

An index is a folder `runs/search/<model>-<data>-<digest>/` (runs/ = `registry.runs_dir()`):
    manifest.json       model, its path and weights' size+mtime, data name + fingerprint, layers, count, dim
    states-L{l}.npy     (M, D) float32 hidden states of hidden-state row l (0 = embeddings), memory-mapped on read
    norms-L{l}.npy      (M,) float32 their L2 norms (cosine without renormalising M rows per query)
    tokens.json         tokens, text index and position of each row, and the texts (contexts are cut from them)
The folder is written under a temporary name and renamed, so a crash never leaves half an index. The
digest covers the model's weights, so a retrained model gets a new index.

Search is exact: one matrix-vector product over the M rows and an argpartition (`tests/model/
test_corpus_search.py` checks it against a full sort of every distance).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model.inspect import InputError, encode
from model.load import LoadedModel
from model.projector import context, token_states
from model.registry import runs_dir
from model.textsets import TextSet

METRICS = ("cosine", "l2")
VERSION = 2  # 2: cut at exactly max_tokens tokens
MAX_K = 1000


@dataclass(frozen=True)
class Hit:
    """One nearest token: rank (1 = nearest), row in the index, score (cosine similarity, or L2 distance),
    the token piece, its text and position, and a context string with the token in [brackets]."""

    rank: int
    row: int
    score: float
    token: str
    text_index: int
    position: int
    context: str

    def to_json(self) -> dict:
        return {"rank": self.rank, "row": self.row, "score": self.score, "token": self.token, "doc": self.text_index,
                "position": self.position, "context": self.context}


class Index:
    """An index folder opened for search (states memory-mapped: only the layer searched is read)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.manifest = json.loads((self.path / "manifest.json").read_text(encoding="utf-8"))
        meta = json.loads((self.path / "tokens.json").read_text(encoding="utf-8"))
        self.tokens: list[str] = meta["tokens"]
        self.text_index = np.asarray(meta["text_index"], dtype=np.int32)  # (M,)
        self.position = np.asarray(meta["position"], dtype=np.int32)  # (M,)
        self.starts = np.asarray(meta["starts"], dtype=np.int32)  # (M,) character span of each token
        self.ends = np.asarray(meta["ends"], dtype=np.int32)
        self.texts: list[str] = meta["texts"]
        self._states: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    @property
    def layers(self) -> list[int]:
        return list(self.manifest["layers"])

    def __len__(self) -> int:
        return int(self.manifest["count"])

    def states(self, layer: int) -> tuple[np.ndarray, np.ndarray]:
        """((M, D) float32 states, (M,) float32 norms) of hidden-state row `layer`, memory-mapped."""
        if layer not in self.layers:
            raise InputError(f"layer {layer} is not in this index: layers {self.layers}")
        if layer not in self._states:
            self._states[layer] = (np.load(self.path / f"states-L{layer}.npy", mmap_mode="r"),
                                   np.load(self.path / f"norms-L{layer}.npy"))
        return self._states[layer]

    def context(self, row: int) -> str:
        return context(self.texts[self.text_index[row]], int(self.starts[row]), int(self.ends[row]))


def _model_digest(loaded: LoadedModel) -> str:
    """The model's path plus the size and mtime of its weight files: changes when the model is retrained."""
    p = Path(loaded.info.path)
    files = sorted(p.glob("*.safetensors")) + sorted(p.glob("*.bin")) if p.is_dir() else [p]
    sig = [str(p)] + [f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files if f.exists()]
    return hashlib.sha256("|".join(sig).encode()).hexdigest()[:12]


def index_dir(loaded: LoadedModel, textset: TextSet, max_tokens: int, root: Path | None = None) -> Path:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{loaded.info.name}-{textset.name}")[-60:].strip("-.")
    digest = hashlib.sha256(f"{_model_digest(loaded)}|{textset.fingerprint}|{max_tokens}|{VERSION}".encode()).hexdigest()[:12]
    return (root or runs_dir() / "search") / f"{slug}-{digest}"


def build_index(loaded: LoadedModel, textset: TextSet, *, layers: list[int] | None = None, max_tokens: int = 20_000,
                root: Path | None = None) -> Index:
    """Open the index of (model, text set, max_tokens), building it first if it is not on disk yet."""
    path = index_dir(loaded, textset, max_tokens, root)
    wanted = list(range(loaded.backend.num_layers + 1)) if layers is None else sorted(set(layers))
    if (path / "manifest.json").is_file():
        index = Index(path)
        if set(wanted) <= set(index.layers):
            return index
    ts = token_states(loaded, textset, wanted, max_tokens=max_tokens)
    index_of_text = {t: i for i, t in enumerate(ts.texts)}  # rows refer to ts.texts, not the whole set
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=path.parent))
    try:
        for i, layer in enumerate(ts.layers):
            x = np.ascontiguousarray(ts.states[i])
            np.save(tmp / f"states-L{layer}.npy", x)
            np.save(tmp / f"norms-L{layer}.npy", np.linalg.norm(x, axis=1).astype(np.float32))
        remap = np.array([index_of_text[textset.texts[i]] for i in ts.text_index], dtype=np.int32) if len(ts.text_index) else []
        (tmp / "tokens.json").write_text(json.dumps({
            "tokens": ts.tokens, "text_index": np.asarray(remap).tolist(), "position": ts.position.tolist(),
            "starts": ts.starts.tolist(), "ends": ts.ends.tolist(), "texts": ts.texts}), encoding="utf-8")
        (tmp / "manifest.json").write_text(json.dumps({
            "version": VERSION, "model": loaded.info.name, "model_path": str(loaded.info.path),
            "model_digest": _model_digest(loaded), "data": textset.name, "fingerprint": textset.fingerprint,
            "max_tokens": max_tokens, "layers": list(ts.layers), "count": len(ts.tokens),
            "dim": int(ts.states.shape[-1]), "warnings": ts.warnings}, indent=1), encoding="utf-8")
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Index(path)


def query_vector(loaded: LoadedModel, text: str, position: int, layer: int) -> np.ndarray:
    """(D,) float32 hidden state of token `position` of `text` at hidden-state row `layer`."""
    import torch

    enc = encode(loaded, text)
    if not 0 <= position < len(enc.tokens):
        raise InputError(f"token {position} is out of range: the text has tokens 0..{len(enc.tokens) - 1}")
    ids = torch.from_numpy(enc.input_ids)[None, :]
    tti = None if enc.token_type_ids is None else torch.from_numpy(enc.token_type_ids)[None, :]
    hs = loaded.backend.forward(ids, None, tti, attentions=False, hidden_states=True).hidden_states
    if not 0 <= layer < len(hs):
        raise InputError(f"layer {layer} is out of range: hidden states 0..{len(hs) - 1}")
    return hs[layer][0, position].float().numpy()


def search(index: Index, query: np.ndarray, layer: int, *, k: int = 10, metric: str = "cosine",
           exclude: int | None = None) -> list[Hit]:
    """The k rows nearest to `query` (D,) at `layer`: highest cosine similarity or lowest L2 distance, exact.
    `exclude`: a row left out (the query itself when it comes from the index)."""
    if metric not in METRICS:
        raise InputError(f"unknown metric {metric!r}: choose {' or '.join(METRICS)}")
    if not 1 <= k <= MAX_K:
        raise InputError(f"k must be between 1 and {MAX_K}, got {k}")
    x, norms = index.states(layer)
    q = np.asarray(query, dtype=np.float32).reshape(-1)
    if q.shape[0] != x.shape[1]:
        raise InputError(f"the query has {q.shape[0]} dimensions, the index {x.shape[1]}")
    dots = x @ q  # (M,): one pass over the index
    qn = float(np.linalg.norm(q))
    if metric == "cosine":
        key = -dots / np.maximum(norms * qn, 1e-12)  # lower is nearer
    else:
        key = norms.astype(np.float32) ** 2 - 2 * dots  # |x - q|^2 - |q|^2
    if exclude is not None and 0 <= exclude < len(key):
        key[exclude] = np.inf
    k = min(k, len(key) - (exclude is not None and 0 <= exclude < len(key)))
    if k <= 0:
        return []
    # Shortlist by the fast form, then rank the shortlist by distances computed directly in float64, so
    # rounding in the expanded form cannot reorder neighbours.
    short = np.argpartition(key, min(len(key) - 1, 4 * k + 16))[:4 * k + 16]
    short = short[np.isfinite(key[short])]
    rows = np.asarray(x[np.sort(short)], dtype=np.float64)
    short = np.sort(short)
    q64 = q.astype(np.float64)
    if metric == "cosine":
        exact = rows @ q64 / np.maximum(np.linalg.norm(rows, axis=1) * np.linalg.norm(q64), 1e-300)
        order = np.lexsort((short, -exact))[:k]
    else:
        exact = np.linalg.norm(rows - q64, axis=1)
        order = np.lexsort((short, exact))[:k]
    return [Hit(r + 1, int(short[j]), float(exact[j]), index.tokens[short[j]], int(index.text_index[short[j]]),
                int(index.position[short[j]]), index.context(int(short[j]))) for r, j in enumerate(order)]
