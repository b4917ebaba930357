"""The embedding projector: every token of a text collection as a point, from its hidden state at one layer.

    token_states(model, textset, layers)  -> TokenStates: (L', M, D) hidden states of M tokens + who they are
    project(states, "pca" | "umap")        -> (M, 2) coordinates (scikit-learn PCA, umap-learn UMAP)

Texts are run in batches (right-padded: with the attention mask, padding changes no real token's state),
special tokens are left out, and the collection is cut at `max_tokens` whole texts. Row 0 of the hidden
states is the embedding output, row l the output of layer l (as `Inspection.hidden_norms`).

    >>> ts = token_states(load_model("demo/bert"), textsets.builtin("english"), [4])  # doctest: +SKIP
    >>> project(ts.states[0], "pca").shape                                            # doctest: +SKIP
    (580, 2)
"""
from __future__ import annotations

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


@dataclass(frozen=True)
class TokenStates:
    """Hidden states of the M non-special tokens of a collection (texts in order, tokens in order).

    layers:     the hidden-state rows held (0 = embeddings, l = after layer l), ascending.
    states:     (L', M, D) float32.
    text_index: (M,) int32 which text; position: (M,) int32 the token's index in its text's tokens.
    tokens:     M token pieces; words: M words they belong to (text[start:end] widened to the word).
    labels:     M labels (the text set's `label`); contexts: M short strings with the token in [brackets].
    texts:      the texts read (a prefix of the collection when cut at max_tokens).
    """

    layers: tuple[int, ...]
    states: np.ndarray
    text_index: np.ndarray
    position: np.ndarray
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
    encs, total, warnings = [], 0, []
    for i, text in enumerate(textset.texts):
        if total >= max_tokens:
            warnings.append(f"cut at {max_tokens} tokens: {i} of {len(textset.texts)} texts read")
            break
        try:
            e = encode(loaded, text)
        except InputError:
            continue  # an empty line of an upload
        warnings += [f"text {i}: {w}" for w in e.warnings][:3]
        encs.append((i, e))
        total += sum(not t.special for t in e.tokens)
    pad = loaded.tokenizer.pad_token_id or 0
    out: dict[int, list[np.ndarray]] = {l: [] for l in layers}
    ti, pos, toks, words, labels, ctx = [], [], [], [], [], []
    order = sorted(range(len(encs)), key=lambda j: len(encs[j][1].tokens))  # similar lengths share a batch
    rows: dict[int, dict[int, np.ndarray]] = {}
    for s in range(0, len(order), batch):
        chunk = [encs[j] for j in order[s:s + batch]]
        width = max(len(e.tokens) for _, e in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        tti = None if chunk[0][1].token_type_ids is None else torch.zeros((len(chunk), width), dtype=torch.long)
        for r, (_, e) in enumerate(chunk):
            ids[r, :len(e.tokens)] = torch.from_numpy(e.input_ids)
            mask[r, :len(e.tokens)] = 1
        fo = loaded.backend.forward(ids, mask, tti, attentions=False, hidden_states=True)
        if len(fo.hidden_states) != n_layers + 1:
            raise Unavailable(f"{loaded.info.name} gives {len(fo.hidden_states)} hidden states, expected {n_layers + 1}")
        for r, (i, e) in enumerate(chunk):
            keep = np.array([not t.special for t in e.tokens])
            rows[i] = {l: fo.hidden_states[l][r, :len(e.tokens)].float().numpy()[keep] for l in layers}
    for i, e in encs:  # back in collection order
        text = textset.texts[i]
        for p, t in enumerate(e.tokens):
            if t.special:
                continue
            w = _word(text, t.start, t.end)
            ti.append(i), pos.append(p), toks.append(t.text), words.append(w)
            labels.append(textset.label(i, w)), ctx.append(context(text, t.start, t.end))
        for l in layers:
            out[l].append(rows[i][l])
    hidden = loaded.backend.model.config.hidden_size if hasattr(loaded.backend, "model") else 0
    states = np.stack([np.concatenate(out[l]) if out[l] else np.zeros((0, hidden), np.float32) for l in layers])
    return TokenStates(tuple(layers), states.astype(np.float32), np.asarray(ti, np.int32), np.asarray(pos, np.int32),
                       toks, words, labels, ctx, [textset.texts[i] for i, _ in encs], warnings)


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
    import umap  # umap-learn; imported here: its numba compilation takes seconds

    n = min(15, len(x) - 1)
    return umap.UMAP(n_components=2, n_neighbors=n, random_state=seed).fit_transform(x).astype(np.float32)
