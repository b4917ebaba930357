"""The embedding projector: every token of a text collection as a point, from its hidden state at one layer.

    token_states(model, textset, layers)  -> TokenStates: (L', M, D) hidden states of M tokens + who they are
    project(states, "pca" | "umap")        -> (M, 2) coordinates (scikit-learn PCA, umap-learn UMAP)
    warm_umap()                            -> compiles umap-learn's kernels in a thread, once per process

Texts are run in batches (right-padded: with the attention mask, padding changes no real token's state),
special tokens are left out, and the collection is cut at exactly `max_tokens` tokens (the last text read
keeps its first tokens; each token's state is still that of its whole text). Row 0 of the hidden states
is the embedding output, row l the output of layer l (as `Inspection.hidden_norms`).

    >>> ts = token_states(load_model("demo/bert"), textsets.builtin("english"), [4])  # doctest: +SKIP
    >>> project(ts.states[0], "pca").shape                                            # doctest: +SKIP
    (580, 2)
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

import numpy as np
import torch

from model.inspect import InputError, Unavailable, encode
from model.load import LoadedModel
from model.textsets import TextSet

METHODS = ("pca", "umap")
MAX_TOKENS = 200_000
BATCH = 16
CONTEXT_CHARS = 40  # characters of context either side of a token in `contexts`
UMAP_EPOCHS = 200
UMAP_INIT = "spectral"
UMAP_EXACT_KNN = 20_000  # up to this many points UMAP's neighbours are exact; beyond, NN-descent (pynndescent)


@dataclass(frozen=True)
class TokenStates:
    """Hidden states of the M non-special tokens of a collection (texts in order, tokens in order).

    layers:     the hidden-state rows held (0 = embeddings, l = after layer l), ascending.
    states:     (L', M, D) float32.
    text_index: (M,) int32 which text; position: (M,) int32 the token's index in its text's tokens.
    starts, ends: (M,) int32 the token's character span in its text.
    tokens:     M token pieces; words: M words they belong to (text[start:end] widened to the word).
    labels:     M labels (the text set's `label`); contexts: M short strings with the token in [brackets].
    texts:      the texts read (a prefix of the collection when cut at max_tokens).
    """

    layers: tuple[int, ...]
    states: np.ndarray
    text_index: np.ndarray
    position: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    tokens: list[str]
    words: list[str]
    labels: list[str]
    contexts: list[str]
    texts: list[str]
    warnings: list[str] = field(default_factory=list)

    def layer(self, layer: int) -> np.ndarray:
        """(M, D) float32 states of hidden-state row `layer`."""
        if layer not in self.layers:
            raise InputError(f"layer {layer} is not held here: layers {list(self.layers)}")
        return self.states[self.layers.index(layer)]


def unavailable(loaded: LoadedModel) -> str | None:
    if loaded.info.backend != "torch":
        return f"{loaded.info.name}: per-token hidden states in batches need the torch backend (not {loaded.info.backend})"
    return None


def _word(text: str, start: int, end: int) -> str:
    """The whitespace-delimited word around text[start:end], stripped of punctuation at its ends."""
    lo = text.rfind(" ", 0, start) + 1
    hi = text.find(" ", end)
    w = text[lo:len(text) if hi < 0 else hi].strip(".,;:!?\"'()[]")
    return w or text[start:end]


def context(text: str, start: int, end: int, width: int = CONTEXT_CHARS) -> str:
    """`…left [token] right…` around text[start:end]."""
    lo, hi = max(0, start - width), min(len(text), end + width)
    return ("…" if lo else "") + text[lo:start] + "[" + text[start:end] + "]" + text[end:hi] + ("…" if hi < len(text) else "")


def token_states(loaded: LoadedModel, textset: TextSet, layers: list[int], *, max_tokens: int = 5_000,
                 batch: int = BATCH) -> TokenStates:
    """Hidden states at `layers` (0..L) of the collection's tokens, up to `max_tokens` non-special tokens."""
    reason = unavailable(loaded)
    if reason is not None:
        raise Unavailable(reason)
    n_layers = loaded.backend.num_layers
    layers = sorted(set(int(l) for l in layers))
    bad = [l for l in layers if not 0 <= l <= n_layers]
    if bad or not layers:
        raise InputError(f"layer {bad[0] if bad else '(none)'} is out of range: hidden states 0..{n_layers} "
                         "(0 = embeddings)")
    if not 1 <= max_tokens <= MAX_TOKENS:
        raise InputError(f"max_tokens must be between 1 and {MAX_TOKENS}, got {max_tokens}")
    encs, total, warnings, n_read, partial = [], 0, [], len(textset.texts), False
    for i, text in enumerate(textset.texts):
        if total >= max_tokens:
            n_read = i
            break
        try:
            e = encode(loaded, text)
        except InputError:
            continue  # an empty line of an upload
        warnings += [f"text {i}: {w}" for w in e.warnings][:3]
        real = [p for p, t in enumerate(e.tokens) if not t.special]
        kept = real[:max_tokens - total]  # the last text read may keep only its first tokens
        encs.append((i, e, kept))
        total += len(kept)
        if len(kept) < len(real):
            n_read, partial = i + 1, True
            break
    if n_read < len(textset.texts) or partial:
        warnings.insert(0, f"cut at {max_tokens} tokens: {n_read} of {len(textset.texts)} texts read"
                        + (f", the last one up to its token {encs[-1][2][-1]}" if partial else ""))
    pad = loaded.tokenizer.pad_token_id or 0
    out: dict[int, list[np.ndarray]] = {l: [] for l in layers}
    ti, pos, starts, ends, toks, words, labels, ctx = [], [], [], [], [], [], [], []
    order = sorted(range(len(encs)), key=lambda j: len(encs[j][1].tokens))  # similar lengths share a batch
    rows: dict[int, dict[int, np.ndarray]] = {}
    for s in range(0, len(order), batch):
        chunk = [encs[j] for j in order[s:s + batch]]
        width = max(len(e.tokens) for _, e, _ in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        tti = None if chunk[0][1].token_type_ids is None else torch.zeros((len(chunk), width), dtype=torch.long)
        for r, (_, e, _) in enumerate(chunk):
            ids[r, :len(e.tokens)] = torch.from_numpy(e.input_ids)
            mask[r, :len(e.tokens)] = 1
        fo = loaded.backend.forward(ids, mask, tti, attentions=False, hidden_states=True)
        if len(fo.hidden_states) != n_layers + 1:
            raise Unavailable(f"{loaded.info.name} gives {len(fo.hidden_states)} hidden states, expected {n_layers + 1}")
        for r, (i, e, kept) in enumerate(chunk):
            at = torch.as_tensor(kept, dtype=torch.long)
            rows[i] = {l: fo.hidden_states[l][r, at].float().numpy() for l in layers}  # (kept, D)
    for i, e, kept in encs:  # back in collection order
        text = textset.texts[i]
        for p in kept:
            t = e.tokens[p]
            w = _word(text, t.start, t.end)
            ti.append(i), pos.append(p), starts.append(t.start), ends.append(t.end), toks.append(t.text)
            words.append(w), labels.append(textset.label(i, w)), ctx.append(context(text, t.start, t.end))
        for l in layers:
            out[l].append(rows[i][l])
    hidden = loaded.backend.model.config.hidden_size if hasattr(loaded.backend, "model") else 0
    states = np.stack([np.concatenate(out[l]) if out[l] else np.zeros((0, hidden), np.float32) for l in layers])
    i32 = lambda v: np.asarray(v, np.int32)  # noqa: E731
    return TokenStates(tuple(layers), states.astype(np.float32), i32(ti), i32(pos), i32(starts), i32(ends), toks,
                       words, labels, ctx, [textset.texts[i] for i, _, _ in encs], warnings)


def project(states: np.ndarray, method: str = "pca", *, seed: int = 0) -> np.ndarray:
    """(M, D) -> (M, 2) float32: scikit-learn PCA (2 components) or UMAP (15 neighbours, seeded)."""
    x = np.asarray(states, dtype=np.float32)
    if method not in METHODS:
        raise InputError(f"unknown projection {method!r}: choose {' or '.join(METHODS)}")
    if len(x) < 3:
        raise InputError(f"{len(x)} points are too few to project (at least 3)")
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=seed).fit_transform(x).astype(np.float32)
    return _umap(x, seed, UMAP_EPOCHS)


def _umap(x: np.ndarray, seed: int, epochs: int) -> np.ndarray:
    import umap  # umap-learn; imported here: its numba compilation takes seconds

    n = min(15, len(x) - 1)
    kw = {}
    if len(x) <= UMAP_EXACT_KNN:
        # Exact neighbours by scikit-learn's brute force (matrix products): umap-learn's own exact search
        # (below 4,096 points) calls its numba metric from Python once per pair, and its NN-descent took
        # twice as long as this on 5,000 demo-BERT states.
        from sklearn.neighbors import NearestNeighbors

        dist, idx = NearestNeighbors(n_neighbors=n, algorithm="brute").fit(x).kneighbors(x)  # (M, n) self first
        kw["precomputed_knn"] = (idx.astype(np.int32), dist.astype(np.float32), None)  # NN-descent's dtypes
    return umap.UMAP(n_components=2, n_neighbors=n, n_epochs=epochs, init=UMAP_INIT, random_state=seed,
                     **kw).fit_transform(x).astype(np.float32)


_warm_lock = threading.Lock()
_warm_thread: threading.Thread | None = None


def warm_umap() -> threading.Thread:
    """Compile umap-learn's numba kernels in a daemon thread, once per process, off any request: the first
    UMAP of a process otherwise waits for that compilation. Returns the thread (join it to wait)."""
    global _warm_thread
    with _warm_lock:
        if _warm_thread is None:
            _warm_thread = threading.Thread(target=_warm, name="lmscope-umap-warm-up", daemon=True)
            _warm_thread.start()
        return _warm_thread


def umap_ready() -> bool:
    """True once `warm_umap` has finished in this process."""
    return _warm_thread is not None and not _warm_thread.is_alive()


def _warm() -> None:
    try:  # the kernels of the exact-neighbour path (NN-descent, beyond UMAP_EXACT_KNN points, compiles on use)
        _umap(np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32), 0, 2)
    except Exception as e:  # a real call reports the same failure to its user
        logging.getLogger("lmscope.projector").warning("UMAP warm-up: %s", e)
