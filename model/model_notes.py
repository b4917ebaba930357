"""What each demo model knows, for the front ends: its group (real English / toy world) and one line,
whether a text is mostly outside a model's vocabulary (and which listed model reads it instead), and
which listed model reads a text longer than this one's positions.

    >>> note("demo/en-bert").group
    'real English'
    >>> note("demo/bert").group
    'toy world'
    >>> note("bert-base-uncased") is None
    True
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

REAL_ENGLISH, TOY_WORLD = "real English", "toy world"
GROUP_ORDER = (REAL_ENGLISH, TOY_WORLD)
# demo model -> one line a lecturer reads next to the picker (lengths and vocabularies are measured from
# each model's files by `describe`, not written here)
LINES = {
    "en-bert": "masked LM trained on WordNet definitions, fortunes and Python's help text: ordinary English",
    "en-gpt2": "causal LM trained on WordNet definitions, fortunes and Python's help text: ordinary English",
    "bert": "masked LM of a generated toy world (~300 words: people, animals, places); ordinary English falls apart",
    "roberta": "masked LM of the generated toy world (~300 words); ordinary English falls apart",
    "albert": "masked LM of the generated toy world (~300 words); ordinary English falls apart",
    "gpt2": "causal LM of the generated toy world (~300 words); ordinary English falls apart",
    "elmo": "bidirectional LSTM LM of the generated toy world (~300 words); ordinary English falls apart",
}
ENGLISH_FOR = {"mlm": "demo/en-bert", "causal": "demo/en-gpt2"}  # the real-English model of each kind
MIN_CHARS_PER_PIECE = 3  # a word cut into shorter pieces is being spelled, not read ("we" -> w ##e)
OUTSIDE_SHARE = 0.5  # "mostly outside the vocabulary": more than half of the words
_WORDS = re.compile(r"[A-Za-z]+(?:'[a-z]+)?")


@dataclass(frozen=True)
class Note:
    group: str  # REAL_ENGLISH | TOY_WORLD
    line: str


def note(name: str) -> Note | None:
    """The note of a listed demo model (`demo/<dir>`), None for any other model."""
    if not name.startswith("demo/"):
        return None
    short = name.split("/", 1)[1]
    if short in LINES:
        return Note(REAL_ENGLISH if short.startswith("en-") else TOY_WORLD, LINES[short])
    return None


def group_rank(name: str) -> int:
    """Sort key for a model picker: real-English demo models, toy-world demo models, then the rest."""
    n = note(name)
    return GROUP_ORDER.index(n.group) if n else len(GROUP_ORDER)


def positions(path: str | Path) -> int | None:
    """How many tokens a model folder's config says it reads, without loading it."""
    try:
        cfg = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    for k in ("max_position_embeddings", "n_positions", "max_positions"):
        if isinstance(cfg.get(k), int):
            return cfg[k] - (2 if cfg.get("model_type") == "roberta" else 0)
    return None


@dataclass(frozen=True)
class Coverage:
    """words: the text's words; outside: those the tokenizer cannot read (an unknown piece, or spelled out
    in pieces shorter than MIN_CHARS_PER_PIECE on average: "capital" -> c ##a ##p ##it ##a ##l)."""

    words: int
    outside: list[str]

    @property
    def share(self) -> float:
        return len(self.outside) / self.words if self.words else 0.0

    @property
    def mostly_outside(self) -> bool:
        return self.words >= 3 and self.share > OUTSIDE_SHARE


def coverage(tokenizer, text: str) -> Coverage:
    """How much of `text` (its alphabetic words) lies outside the tokenizer's vocabulary."""
    words = _WORDS.findall(text)
    if not words:
        return Coverage(0, [])
    unk = tokenizer.unk_token_id if tokenizer.unk_token_id != tokenizer.eos_token_id else None
    # each word alone; a word inside running text gets its leading space (byte-level BPE marks it)
    enc = tokenizer([" " + w for w in words], add_special_tokens=False, verbose=False)["input_ids"]
    outside = [w for w, ids in zip(words, enc)
               if (unk is not None and unk in ids) or (len(ids) > 1 and len(w) / len(ids) < MIN_CHARS_PER_PIECE)]
    return Coverage(len(words), outside)


def kind_of(capabilities) -> str | None:
    return "mlm" if "mlm" in capabilities else "causal" if "causal" in capabilities else None


def vocabulary_message(name: str, tokenizer, capabilities, text: str, listed: list[str]) -> str | None:
    """One sentence when `text` is mostly outside the model's vocabulary, naming a listed model to use."""
    c = coverage(tokenizer, text)
    if not c.mostly_outside:
        return None
    n = note(name)
    what = f" (a {n.group} model: {n.line.split(':')[0].split(';')[0]})" if n and n.group == TOY_WORLD else ""
    msg = (f"{len(c.outside)} of the {c.words} words of this text are outside {name}'s vocabulary{what}: "
           f"they are spelled out in short pieces or unknown tokens (e.g. {', '.join(c.outside[:3])}).")
    better = ENGLISH_FOR.get(kind_of(capabilities) or "")
    if better and better != name and better in listed:
        msg += f" For ordinary English use {better}."
    return msg


def longer_reader(name: str, n_tokens: int, capabilities, entries) -> str | None:
    """A listed model of the same kind (masked / causal) that reads n_tokens whole: its name and length
    ("demo/en-bert (320 tokens)"), preferring real-English demo models; None if there is none.
    entries: model.registry.ModelEntry list."""
    kind = kind_of(capabilities)
    best = None
    for e in sorted(entries, key=lambda e: group_rank(e.name)):
        if e.name == name or e.note:
            continue
        arch = e.architecture
        same = (kind == "mlm" and ("MaskedLM" in arch or "PreTraining" in arch)) or \
               (kind == "causal" and ("LMHead" in arch or "CausalLM" in arch))
        n = positions(e.path)
        if same and n is not None and n >= n_tokens:
            best = f"{e.name} ({n} tokens)"
            break
    return best


__all__ = ["Note", "note", "group_rank", "coverage", "Coverage", "vocabulary_message", "longer_reader", "positions",
           "REAL_ENGLISH", "TOY_WORLD"]
