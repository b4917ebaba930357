"""Subject-verb agreement probes, per kind, for any loaded masked or causal model.

A probe is a toy-world sentence whose verb must agree with its subject ("the dog near the cats runs ."):
the model passes it when it scores the right verb form above the wrong one. Probes come in kinds (see
`model.train.toyworld.PROBE_KINDS`): no noun between subject and verb ("none"), or an attractor noun of
the subject's own number ("same") or of the other one ("opposite"), in a prepositional phrase or a
relative clause. A model that learned "the opposite number of the nearest noun" passes "opposite" and
fails "same": the per-kind table shows such a shortcut where an overall figure hides it.

    >>> r = agreement(load_model("demo/gpt2"), n=200)             # doctest: +SKIP
    >>> dict(zip(r.groups, r.accuracy.round(2)))                  # doctest: +SKIP
    {'all': 0.99, 'none': 1.0, 'same': 0.98, ...}

Scores: masked models, log p of each form at the mask (forms of one token each) or the pseudo-log-
likelihood of the two whole sentences (forms of different lengths, e.g. "▁see" + "s"); causal models,
log p(verb | "<eos> opener prefix") after each of two document openers (one singular subject, one plural:
in the toy world a probe-like sentence never opens a text), the probe passing only if the right form
wins after both; the scores shown are those after the opener where its margin is smallest.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from model.errors import InputError, Unavailable
from model.modelinfo import LoadedModel
from model.train.toyworld import PROBE_KINDS, TRAIN_SEED, AgreementProbe, agreement_probes

PROBE_SEED = 4242  # the probes of the demo models' quality record
CAUSAL_OPENERS = ("in the garden there is a cat .", "in the market there are some dogs .")
# rows of the result: overall, by attractor number, by construction, then each kind
GROUPS = ("all", "none", "same", "opposite", "preposition", "relative") + PROBE_KINDS[1:]
MAX_PROBES = 5000


@dataclass
class ProbeScore:
    """One probe as the model saw it: its two verb scores (log p, nats; higher = preferred)."""

    sentence: str
    kind: str
    correct: str
    wrong: str
    correct_score: float
    wrong_score: float
    ok: bool

    @property
    def preferred(self) -> str:
        return self.correct if self.ok else self.wrong


@dataclass
class AgreementResult:
    """Agreement per probe kind. groups: row labels (GROUPS); accuracy: (len(groups),) float64, NaN for a
    group with no probe; counts: (len(groups),) int64; examples: a few scored probes of each kind;
    skipped: probes whose two verb forms are not one token each (causal models cannot compare them)."""

    model: str
    objective: str  # "masked" | "causal"
    groups: tuple[str, ...]
    accuracy: np.ndarray
    counts: np.ndarray
    examples: list[ProbeScore] = field(default_factory=list)
    skipped: int = 0
    seed: int = PROBE_SEED

    @property
    def overall(self) -> float:
        return float(self.accuracy[0])

    def by_group(self) -> dict[str, float | None]:
        return {g: (None if math.isnan(a) else float(a)) for g, a in zip(self.groups, self.accuracy)}

    def to_json(self) -> dict:
        return {"model": self.model, "objective": self.objective, "seed": self.seed, "skipped": self.skipped,
                "agreement": self.by_group(), "probes": {g: int(c) for g, c in zip(self.groups, self.counts)},
                "examples": [asdict(e) | {"preferred": e.preferred} for e in self.examples]}


def objective_of(m: LoadedModel) -> str:
    """"masked" or "causal"; ValueError for a model that scores neither way (e.g. an encoder without head)."""
    if m.info.task in ("masked-lm", "pretraining") and m.tokenizer.mask_token is not None:
        return "masked"
    if m.info.task in ("causal-lm", "elmo"):
        return "causal"
    raise Unavailable(f"{m.name} is a {m.info.task} model: agreement probes need a masked or a causal LM head")


def _ids(tok, word: str, space: bool) -> list[int]:
    return tok((" " + word) if space else word, add_special_tokens=False)["input_ids"]


@torch.no_grad()
def score_masked(m: LoadedModel, p: AgreementProbe) -> tuple[float, float]:
    """(score of the right form, of the wrong form) at the mask of p.masked, in nats."""
    from model.inspect import inspect

    tok, be = m.tokenizer, m.backend
    space = m.info.model_type == "roberta"  # byte-level BPE: a word inside a sentence carries its space
    c, w = _ids(tok, p.correct, space), _ids(tok, p.wrong, space)
    if len(c) == 1 and len(w) == 1:  # one token each: compare the two log-probabilities at the mask
        r = inspect(m, p.masked.replace("{mask}", tok.mask_token), top_k=1, summaries=False)
        out = be.forward(torch.tensor([[t.id for t in r.tokens]]), attentions=False, hidden_states=False)
        logp = torch.log_softmax(out.logits_at(torch.tensor([r.masks[0].position]))[0, 0].float(), -1)
        return float(logp[c[0]]), float(logp[w[0]])
    # the forms differ in length: pseudo-log-likelihoods of the two sentences (surprisal is in bits)
    bits = [float(np.nansum(inspect(m, p.masked.replace("{mask}", v), pll=True, summaries=False).surprisal))
            for v in (p.correct, p.wrong)]
    return -bits[0] * math.log(2), -bits[1] * math.log(2)


@torch.no_grad()
def score_causal(m: LoadedModel, p: AgreementProbe) -> tuple[float, float] | None:
    """(right, wrong) log p of the verb after each opener and the prefix, at the opener where the right
    form's margin is smallest; None when a form is not one token."""
    tok, be = m.tokenizer, m.backend
    c, w = _ids(tok, p.correct, True), _ids(tok, p.wrong, True)
    if len(c) != 1 or len(w) != 1:
        return None
    start = [tok.eos_token_id] if tok.eos_token_id is not None else []
    worst = None
    for opener in CAUSAL_OPENERS:
        ids = torch.tensor([start + tok(f"{opener} {p.prefix}", add_special_tokens=False)["input_ids"]])
        logp = torch.log_softmax(be.next_token_logits(ids)[0].float(), -1)
        pair = (float(logp[c[0]]), float(logp[w[0]]))
        if worst is None or pair[0] - pair[1] < worst[0] - worst[1]:
            worst = pair
    return worst


def _groups_of(kind: str) -> tuple[str, ...]:
    if kind == "none":
        return ("all", "none")
    number, construction = kind.split("/")
    return ("all", number, construction, kind)


def summarize(model: str, objective: str, scored: list[ProbeScore], skipped: int = 0, n_examples: int = 3,
              seed: int = PROBE_SEED) -> AgreementResult:
    """Accuracy per group of scored probes, with the first n_examples probes of each kind as examples."""
    hits = dict.fromkeys(GROUPS, 0)
    counts = dict.fromkeys(GROUPS, 0)
    for s in scored:
        for g in _groups_of(s.kind):
            hits[g] += s.ok
            counts[g] += 1
    acc = np.array([hits[g] / counts[g] if counts[g] else np.nan for g in GROUPS], dtype=np.float64)
    examples = [s for k in PROBE_KINDS for s in [x for x in scored if x.kind == k][:n_examples]]
    return AgreementResult(model, objective, GROUPS, acc, np.array([counts[g] for g in GROUPS], dtype=np.int64),
                           examples, skipped, seed)


def agreement(m: LoadedModel, n: int = 500, seed: int = PROBE_SEED, exclude: set[str] | frozenset[str] = frozenset(),
              n_examples: int = 3) -> AgreementResult:
    """Score n toy-world agreement probes (seed: which ones; never the training corpus's seed; exclude:
    sentences to skip, e.g. every training sentence) on a masked or causal model, per probe kind."""
    if not 1 <= n <= MAX_PROBES:
        raise InputError(f"the number of probes must be between 1 and {MAX_PROBES}, got {n}")
    if n_examples < 0:
        raise InputError(f"the number of examples per kind must be >= 0, got {n_examples}")
    if seed == TRAIN_SEED:
        raise InputError(f"probe seed {seed} is the training corpus seed; use another seed so probes are held out")
    objective = objective_of(m)
    scored, skipped = [], 0
    for p in agreement_probes(n, seed, exclude=exclude):
        pair = score_masked(m, p) if objective == "masked" else score_causal(m, p)
        if pair is None:
            skipped += 1
            continue
        scored.append(ProbeScore(p.sentence, p.kind, p.correct, p.wrong, pair[0], pair[1], pair[0] > pair[1]))
    return summarize(m.name, objective, scored, skipped, n_examples, seed)


__all__ = ["AgreementResult", "ProbeScore", "GROUPS", "PROBE_SEED", "agreement", "objective_of", "score_causal",
           "score_masked", "summarize"]
