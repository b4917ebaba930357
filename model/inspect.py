"""inspect(model, text) -> Inspection: tokens, attention, predictions and per-layer views of one text.

    >>> m = load_model("demo/bert")                               # doctest: +SKIP
    >>> r = inspect(m, "the dogs near the cat [MASK] .")          # doctest: +SKIP
    >>> r.masks[0].predictions[0].token                           # doctest: +SKIP
    'run'

`neuron_data(model, text)` gives the queries and keys behind the maps (bertviz's neuron view).

Data flow: text -> tokenizer (offsets, special flags, word ids) -> backend forward (hidden states, lazy
attention, logits only where needed) -> kernels (maps, summaries) -> plain numpy/str result.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Mapping

import numpy as np
import torch

from kernels.attention import AttentionStore
from model.errors import InputError, Unavailable
from model.modelinfo import LoadedModel
from model.results import (HeadSummary, Inspection, LogitLens, MaskPrediction, NeuronView, PairPrediction, Prediction,
                           Token)

MASK_SPELLINGS = ("[MASK]", "<mask>")  # both are six characters: swapping them keeps every offset
LOG2E = 1.0 / math.log(2.0)
CHUNK = 256  # positions per LM-head call at most
LOGITS_BYTES = 64 * 2**20  # and at most this much of fp32 logits per call (a 152k vocabulary: 110 positions)


def chunk_positions(vocab_size: int) -> int:
    """Positions per LM-head call: bounds the logits (and their log-softmax) to LOGITS_BYTES each.

    >>> chunk_positions(30522), chunk_positions(151936)
    (256, 110)
    """
    return max(1, min(CHUNK, LOGITS_BYTES // (4 * max(1, vocab_size))))


@dataclass
class Encoded:
    """A tokenized input. input_ids / token_type_ids: (N,) int64."""

    tokens: list[Token]
    input_ids: np.ndarray
    token_type_ids: np.ndarray | None
    warnings: list[str]


def max_tokens(loaded: LoadedModel) -> int | None:
    """How many tokens the model can read (RoBERTa-style models reserve padding_idx + 1 positions)."""
    n = loaded.backend.max_positions
    if n is None:
        return None
    offset = getattr(loaded.backend, "position_offset", None)  # the torch backend reads it from the model
    if offset is None:
        offset = 2 if loaded.info.model_type == "roberta" else 0
    return n - offset


def clean_text(text: str) -> str:
    """Replace lone surrogates (which cannot be encoded) by U+FFFD, one character for one, so offsets
    still index the caller's string."""
    if not isinstance(text, str):
        raise InputError("the text must be a string")
    # each surrogate on its own (a utf-16 round trip would join a high+low pair into one character)
    return "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in text) if _has_surrogate(text) else text


def _has_surrogate(text: str) -> bool:
    return any("\ud800" <= c <= "\udfff" for c in text)


def encode(loaded: LoadedModel, text: str, text_pair: str | None = None) -> Encoded:
    """Tokenize with character offsets; truncate to the model's positions with a warning saying where."""
    tok = loaded.tokenizer
    text = clean_text(text)
    if not text.strip():
        raise InputError("the text is empty")
    if text_pair is not None:
        text_pair = clean_text(text_pair)
        if not text_pair.strip():
            text_pair = None
    mask = tok.mask_token
    if mask and len(mask) == 6:
        for spelling in MASK_SPELLINGS:
            text = text.replace(spelling, mask)
            text_pair = text_pair.replace(spelling, mask) if text_pair else text_pair
    limit = max_tokens(loaded)
    # Segment ids only where the model has segment embeddings (GPT-2 would add wte[0] for type 0).
    kw = dict(return_offsets_mapping=True, return_special_tokens_mask=True, verbose=False,
              return_token_type_ids=loaded.info.model_type in ("bert", "albert"))
    enc = tok(text, text_pair, **kw) if text_pair else tok(text, **kw)
    warnings: list[str] = []
    n_full = len(enc["input_ids"])
    if limit is not None and n_full > limit:
        enc = tok(text, text_pair, truncation=True, max_length=limit, **kw) if text_pair else \
            tok(text, truncation=True, max_length=limit, **kw)
    ids = enc["input_ids"]
    pieces = tok.convert_ids_to_tokens(ids)
    tti = enc.get("token_type_ids")
    seq_ids = tti if tti is not None else [s or 0 for s in enc.sequence_ids()]
    word_ids = enc.word_ids()
    special_mask = enc["special_tokens_mask"]
    tokens = [
        Token(
            text=pieces[i], id=int(ids[i]), start=int(enc["offset_mapping"][i][0]), end=int(enc["offset_mapping"][i][1]),
            special=bool(special_mask[i]), word=word_ids[i], segment=int(seq_ids[i]),
        )
        for i in range(len(ids))
    ]
    if len(ids) < n_full:
        last = max((t.end for t in tokens if not t.special and t.segment == 0), default=0)
        where = f"after character {last} of {len(text)} (…{text[max(0, last - 20):last]!r})"
        warnings.append(f"the input is {n_full} tokens but {loaded.info.name} reads at most {limit}: truncated {where}"
                        + longer_hint(loaded, n_full))
    return Encoded(tokens, np.asarray(ids, dtype=np.int64), None if tti is None else np.asarray(tti, dtype=np.int64), warnings)


def longer_hint(loaded: LoadedModel, n_tokens: int) -> str:
    """"; demo/en-bert (320 tokens) reads it whole" when a listed model of the same kind does, else ""."""
    from model.model_notes import longer_reader
    from model.registry import list_models

    other = longer_reader(loaded.info.name, n_tokens, loaded.info.capabilities, list_models())
    return f"; {other} reads it whole" if other else ""


def _topk(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(n, vocab) logits -> log-probs (n, vocab), top-k ids (n, k), top-k probs (n, k)."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    top = logp.topk(min(k, logp.shape[-1]), dim=-1)
    return logp, top.indices, top.values.exp()


def _predictions(tok, ids: torch.Tensor, probs: torch.Tensor) -> list[Prediction]:
    names = tok.convert_ids_to_tokens(ids.tolist())
    return [Prediction(n, int(i), float(p)) for n, i, p in zip(names, ids.tolist(), probs.tolist())]


def inspect(
    loaded: LoadedModel,
    text: str,
    text_pair: str | None = None,
    *,
    top_k: int = 10,
    pll: bool = False,
    logit_lens: bool = False,
    lens_top_k: int = 5,
    summaries: bool = True,
    predictions: bool = True,
    mask_targets: Mapping[int, int] | Iterable[tuple[int, int]] = (),
) -> Inspection:
    """Run one text (or a sentence pair) through a model and collect everything the views need.

    top_k: predictions kept per mask / position. pll: masked-LM pseudo-log-likelihood (one extra
    forward per token, batched). logit_lens: each layer through the LM head (top `lens_top_k`).
    summaries: per-head entropy / distance / special share (one pass over all layers' maps).
    predictions: masked-LM top-k at each mask, and a causal model's next-token top-k and surprisal (the LM
    head at every position: at 512 tokens and a 152k vocabulary, about a third of the inspection); False
    skips them for views that show none (the Attention page). `pll` and `logit_lens` are asked separately.
    mask_targets: {character offset in `text` where a mask token starts: id of the token it hides} (or
    those pairs): each such mask's `MaskPrediction.target` / `target_rank` give that token's probability
    and rank there, in the top k or not.
    """
    if not 1 <= top_k <= 1000:
        raise InputError(f"top_k must be between 1 and 1000, got {top_k}")
    enc = encode(loaded, text, text_pair)
    backend, tok, info = loaded.backend, loaded.tokenizer, loaded.info
    n = len(enc.tokens)
    ids = torch.from_numpy(enc.input_ids)[None, :]  # (1, N)
    tti = None if enc.token_type_ids is None else torch.from_numpy(enc.token_type_ids)[None, :]
    out = backend.forward(ids, None, tti, attentions="attention" in info.capabilities, hidden_states=True)

    special = np.array([t.special for t in enc.tokens], dtype=bool)
    hs = out.hidden_states  # L + 1 x (1, N, hidden)
    result = Inspection(
        model_name=info.name, text=text, text_pair=text_pair, tokens=enc.tokens,
        num_layers=backend.num_layers if out.attention else 0, num_heads=backend.num_heads if out.attention else 0,
        # (L + 1, N); (0, N) for a graph that gives logits only (a foreign ONNX export)
        hidden_norms=torch.stack([h[0].float().norm(dim=-1) for h in hs]).numpy() if hs else np.zeros((0, n), np.float32),
        warnings=list(info.warnings) + enc.warnings, unavailable=dict(info.unavailable),
    )
    if not logit_lens:  # only the lens reads every layer's hidden states: drop them before the LM head runs
        hs = out.hidden_states = []
    if out.attention:
        store = AttentionStore([(lambda heads, f=f: f(heads)[0]) for f in out.attention], backend.num_heads, special)
        result.attention_source = store
        result.num_layers = len(out.attention)
        if summaries:
            s = store.summaries()
            result.head_summary = HeadSummary(s["entropy"], s["distance"], s["special_share"], s["max_entropy"])

    if "mlm" in info.capabilities:
        _masked_lm(result, loaded, out, enc, top_k, pll, dict(mask_targets), predictions)
    if "causal" in info.capabilities and predictions:
        _causal(result, tok, out, enc, top_k, backend.vocab_size)
    if logit_lens and "lens" in info.capabilities:
        result.logit_lens = _logit_lens(loaded, hs, enc, lens_top_k)
    if out.pair_logits is not None and enc.token_type_ids is not None and text_pair:
        kind = backend.pair_kind or "nsp"
        result.pair = PairPrediction(kind, float(torch.softmax(out.pair_logits[0], -1)[0]))
    elif text_pair and not (("nsp" in info.capabilities) or ("sop" in info.capabilities)):
        result.warnings.append("this model has no next-sentence / sentence-order head: the pair is read as one input")
    return result


def _masked_lm(result: Inspection, loaded: LoadedModel, out, enc: Encoded, top_k: int, pll: bool,
               targets: dict[int, int], predictions: bool = True) -> None:
    tok = loaded.tokenizer
    mask_id = tok.mask_token_id
    positions = [i for i, t in enumerate(enc.tokens) if t.id == mask_id] if predictions else []
    if positions:
        logits = out.logits_at(torch.tensor(positions))[0]  # (masks, vocab)
        logp, ids, probs = _topk(logits, top_k)  # (masks, vocab), (masks, k), (masks, k)
        result.masks = []
        for j, p in enumerate(positions):
            target, rank = None, None
            t_id = targets.get(enc.tokens[p].start)
            if t_id is not None and 0 <= int(t_id) < logp.shape[-1]:
                lp = logp[j, int(t_id)]
                rank = int((logp[j] > lp).sum()) + 1  # ties share the better rank
                target = Prediction(tok.convert_ids_to_tokens(int(t_id)), int(t_id), float(lp.exp()))
            result.masks.append(MaskPrediction(p, _predictions(tok, ids[j], probs[j]), target, rank))
    if pll:
        result.surprisal = pseudo_log_likelihood(loaded, enc)
        result.surprisal_kind = "pll"


def pseudo_log_likelihood(loaded: LoadedModel, enc: Encoded, batch: int = 32) -> np.ndarray:
    """(N,) float32 surprisal in bits of each token with it alone masked (NaN for special tokens).

    One forward per maskable token, `batch` at a time (Salazar et al. 2020, pseudo-log-likelihood).
    """
    tok, backend = loaded.tokenizer, loaded.backend
    ids = torch.from_numpy(enc.input_ids)
    tti = None if enc.token_type_ids is None else torch.from_numpy(enc.token_type_ids)
    targets = [i for i, t in enumerate(enc.tokens) if not t.special and t.id != tok.mask_token_id]
    out = np.full(len(enc.tokens), np.nan, dtype=np.float32)
    for s in range(0, len(targets), batch):
        pos = torch.tensor(targets[s:s + batch])
        rows = ids.repeat(len(pos), 1)  # (b, N)
        rows[torch.arange(len(pos)), pos] = tok.mask_token_id
        fo = backend.forward(rows, None, None if tti is None else tti.repeat(len(pos), 1), attentions=False, hidden_states=False)
        # Row j only needs the logits at its own masked position.
        logits = torch.stack([fo.logits_at(pos[j:j + 1])[j, 0] for j in range(len(pos))])  # (b, vocab)
        logp = torch.log_softmax(logits.float(), -1)
        out[pos.numpy()] = (-logp[torch.arange(len(pos)), ids[pos]] * LOG2E).numpy()
    return out


@torch.inference_mode()  # the logits are inference tensors, updated in place
def _causal(result: Inspection, tok, out, enc: Encoded, top_k: int, vocab_size: int) -> None:
    n = len(enc.tokens)
    ids = torch.from_numpy(enc.input_ids)
    next_ids = np.zeros((n, top_k), dtype=np.int64)
    next_probs = np.zeros((n, top_k), dtype=np.float32)
    surprisal = np.full(n, np.nan, dtype=np.float32)
    chunk = chunk_positions(vocab_size)
    for s in range(0, n, chunk):
        pos = torch.arange(s, min(n, s + chunk))
        # no (chunk, vocab) log-softmax: top k and the next token's log-prob from the logits and their logsumexp
        logits = out.logits_at(pos)[0].float()  # (chunk, vocab), a fresh tensor: overwritten below
        top = logits.topk(min(top_k, logits.shape[-1]), dim=-1)
        rows = torch.nonzero(pos + 1 < n).squeeze(1)  # chunk rows that have a next token
        src = pos[rows]
        following = logits[rows, ids[src + 1]]  # (rows,) the next token's logit
        # logsumexp in place (no second (chunk, vocab) buffer: at a 152k vocabulary each is 64 MB)
        peak = logits.amax(dim=-1)  # (chunk,)
        lse = logits.sub_(peak[:, None]).exp_().sum(dim=-1).log_().add_(peak)  # (chunk,)
        k = top.indices.shape[1]
        next_ids[pos.numpy(), :k] = top.indices.numpy()
        next_probs[pos.numpy(), :k] = (top.values - lse[:, None]).exp().numpy()
        surprisal[(src + 1).numpy()] = (-(following - lse[rows]) * LOG2E).numpy()
        del logits
    for i, t in enumerate(enc.tokens):
        if t.special:
            surprisal[i] = np.nan
    result.next_ids, result.next_probs = next_ids, next_probs
    result.next_tokens = [tok.convert_ids_to_tokens(row.tolist()) for row in next_ids]
    if out.backward_logits is not None:  # ELMo's backward LM: position i predicts token i - 1
        logp_b = torch.log_softmax(out.backward_logits[0].float(), -1)
        back = np.full(n, np.nan, dtype=np.float32)
        back[:-1] = (-logp_b[1:][torch.arange(n - 1), ids[:-1]] * LOG2E).numpy()
        result.backward_surprisal = back
    result.surprisal, result.surprisal_kind = surprisal, "causal"


def _logit_lens(loaded: LoadedModel, hs: list[torch.Tensor], enc: Encoded, k: int) -> LogitLens:
    tok, backend = loaded.tokenizer, loaded.backend
    causal = "causal" in loaded.info.capabilities
    n = len(enc.tokens)
    ids = torch.from_numpy(enc.input_ids)
    layers = len(hs)
    top_ids = np.zeros((layers, n, k), dtype=np.int64)
    top_p = np.zeros((layers, n, k), dtype=np.float32)
    actual = np.full((layers, n), np.nan, dtype=np.float32)
    target = torch.cat([ids[1:], ids[:1]]) if causal else ids  # what each position should predict
    valid = torch.arange(n) < (n - 1) if causal else torch.ones(n, dtype=torch.bool)
    chunk = chunk_positions(backend.vocab_size)
    for layer, h in enumerate(hs):
        for s in range(0, n, chunk):
            pos = torch.arange(s, min(n, s + chunk))
            logp, ti, tp = _topk(backend.lens(h[:, pos, :], layer)[0], k)
            top_ids[layer, pos.numpy()] = ti.numpy()
            top_p[layer, pos.numpy()] = tp.numpy()
            a = logp[torch.arange(len(pos)), target[pos]].exp()
            actual[layer, pos.numpy()] = torch.where(valid[pos], a, torch.nan).numpy()
    names = [[tok.convert_ids_to_tokens(row.tolist()) for row in layer] for layer in top_ids]
    return LogitLens(top_ids, top_p, names, actual)


def neuron_unavailable(loaded: LoadedModel) -> str | None:
    """Why `neuron_data` cannot work on this model (no attention, or attention probabilities without the
    queries and keys behind them), or None when it can."""
    if "attention" not in loaded.info.capabilities:
        return loaded.info.unavailable.get("attention", f"{loaded.info.name} exposes no attention outputs")
    reason = loaded.backend.qk_unavailable()
    return None if reason is None else f"{loaded.info.name}: {reason}"


def neuron_data(loaded: LoadedModel, text: str, text_pair: str | None = None, *,
                layers: list[int] | None = None) -> NeuronView:
    """Queries, keys and attention probabilities of every head of `layers` (all when None): the numbers
    bertviz's neuron view shows, for any torch model lmscope loads (not only bertviz's own model classes).

    The probabilities come from the same recorded queries, keys, scale and mask as `inspect()`'s maps, so
    they equal `Inspection.attention(layer, head)`. Memory: 2 * L' * H * N * d + L' * H * N * N floats.
    Raises `Unavailable` (reason from `neuron_unavailable`) for ONNX graphs, ELMo and eager-fallback models.

        >>> v = neuron_data(load_model("demo/gpt2"), "the cat", layers=[1])   # doctest: +SKIP
        >>> v.queries.shape, v.causal                                          # doctest: +SKIP
        ((1, 4, 2, 64), True)
    """
    reason = neuron_unavailable(loaded)
    if reason is not None:
        raise Unavailable(reason)
    backend = loaded.backend
    if layers is not None:
        bad = [l for l in layers if not 0 <= l < backend.num_layers]
        if bad:
            raise InputError(f"layer {bad[0]} is out of range: this model has layers 0..{backend.num_layers - 1}")
    enc = encode(loaded, text, text_pair)
    ids = torch.from_numpy(enc.input_ids)[None, :]  # (1, N)
    tti = None if enc.token_type_ids is None else torch.from_numpy(enc.token_type_ids)[None, :]
    out = backend.forward(ids, None, tti, attentions=True, hidden_states=False)
    if not out.qk or not out.attention:
        raise Unavailable(f"{loaded.info.name}: the forward pass recorded no queries and keys")
    chosen = tuple(range(len(out.qk))) if layers is None else tuple(sorted(set(layers)))
    queries, keys, probs, scales = [], [], [], []
    for layer in chosen:
        q, k, scale = out.qk[layer](None)  # (1, H, N, d) each
        queries.append(q[0])
        keys.append(k[0])
        probs.append(out.attention[layer](None)[0])  # (H, N, N), the function inspect()'s maps come from
        scales.append(scale)
    return NeuronView(
        tokens=enc.tokens, layers=chosen,
        queries=torch.stack(queries).numpy(),  # (L', H, N, d)
        keys=torch.stack(keys).numpy(),  # (L', H, N, d)
        attention=torch.stack(probs).numpy(),  # (L', H, N, N)
        scale=np.asarray(scales, dtype=np.float32),  # (L',)
        causal=bool(backend.causal), warnings=list(loaded.info.warnings) + enc.warnings,
    )
