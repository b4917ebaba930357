"""Real English for the en-* demo models, read at training time from where it is installed (nothing
third-party is copied into the repository):

- WordNet 3.0 (Debian package `wordnet-base`, /usr/share/wordnet/data.{noun,verb,adj,adv}): each synset's
  gloss (the text after "|") written as a sentence about its first word ("Paris is the capital and
  largest city of France."), plus its quoted example sentences. Synsets follow each other by topic in
  those files (one lexicographer file after another), so runs of GROUP consecutive synsets of one file
  make one document.
- Debian's fortunes (`fortunes`, `fortunes-min`, /usr/share/games/fortunes/*, "%"-separated): one fortune
  one document; the offensive set (off/) and the files in SKIP_FORTUNES are never read.
- CPython's own help text (`pydoc_data.topics`; model.train.corpus's "pydoc" corpus).

`english_split()` holds documents out (seeded, per source), then removes from the training documents
every sentence that also occurs in the held-out ones or contains one of the probe sentences
(english_probes), and measures the overlap left (0).

    >>> split = english_split()                       # doctest: +SKIP
    >>> split.stats["overlap_sentences"], len(split.train) > 10000   # doctest: +SKIP
    (0, True)
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from model.train.corpus import Corpus, CorpusError, builtin_corpus, split_sentences

WORDNET_DIR = Path(os.environ.get("LMSCOPE_WORDNET", "/usr/share/wordnet"))
FORTUNES_DIR = Path(os.environ.get("LMSCOPE_FORTUNES", "/usr/share/games/fortunes"))
WORDNET_FILES = ("data.noun", "data.verb", "data.adj", "data.adv")
# ascii-art is pictures; ethnic / men-women are jokes about groups of people; drugs and translate-me are
# not what a classroom model should learn from. The off/ folder (offensive fortunes) is never read.
SKIP_FORTUNES = {"ascii-art", "ethnic", "men-women", "drugs", "translate-me"}
GROUP = 8  # consecutive synsets of one lexicographer file per WordNet document
HELDOUT_SHARE = 0.02
SPLIT_SEED = 13
APT_HINT = "apt-get install -y wordnet-base fortunes fortunes-min"


@dataclass
class EnglishSplit:
    train: list[list[str]]  # documents of sentences
    heldout: dict[str, list[list[str]]]  # source -> held-out documents
    stats: dict = field(default_factory=dict)

    def train_corpus(self) -> Corpus:
        raw = json.dumps(self.train).encode()
        return Corpus("english", self.train, hashlib.sha256(raw).hexdigest())


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _end(s: str) -> str:
    s = s.strip()
    return s if s[-1:] in ".!?" else s + "."


def gloss_sentences(pos: str, lemma: str, gloss: str) -> list[str]:
    """A synset's gloss as sentences: the definition about its first word, then the quoted examples.

    >>> gloss_sentences("n", "Paris", 'the capital and largest city of France; "he lived in Paris"')
    ['Paris is the capital and largest city of France.', 'He lived in Paris.']
    >>> gloss_sentences("v", "run", "move fast by using one's feet")
    ["To run is to move fast by using one's feet."]
    """
    word = re.sub(r"\([a-z]+\)$", "", lemma).replace("_", " ")
    examples = [e.strip() for e in re.findall(r'"([^"]+)"', gloss) if len(e.split()) >= 3]
    definition = re.split(r';?\s*"', gloss, maxsplit=1)[0].strip().rstrip(";").strip()
    out = []
    if definition:
        if pos == "n":
            if word[:1].islower() and re.match(r"(a|an) ", definition):
                word = ("an " if word[0] in "aeiou" else "a ") + word
            out.append(f"{word} is {definition}")
        elif pos == "v":
            out.append(f"to {word} is to {definition}")
        else:
            out.append(f"{word} means {definition}")
    out += examples
    return [_end(_cap(s)) for s in out]


def everyday_synsets(root: Path = WORDNET_DIR) -> set[tuple[str, str]]:
    """(pos, offset) of every synset that is a tagged sense of some word: in index.<pos>, a lemma's first
    tagsense_cnt synsets are the senses seen in WordNet's sense-tagged texts (SemCor), i.e. the everyday
    ones (27,255 of 117,659 synsets; the rest is mostly taxonomy: "a genus of ...")."""
    out = set()
    for pos_file in ("index.noun", "index.verb", "index.adj", "index.adv"):
        path = Path(root) / pos_file
        if not path.is_file():
            raise CorpusError(f"WordNet is not installed ({path} is missing): run `{APT_HINT}`")
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if not line[:1].strip():
                continue  # licence header lines start with spaces
            f = line.split()
            pos, p_cnt = f[1], int(f[3])
            tagged, offsets = int(f[5 + p_cnt]), f[6 + p_cnt:]
            out.update((pos, o) for o in offsets[:tagged])
    return out


# WordNet's 45 lexicographer files by number (the second field of a synset line): a topic per synset.
LEXNAMES = (
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal", "noun.artifact", "noun.attribute",
    "noun.body", "noun.cognition", "noun.communication", "noun.event", "noun.feeling", "noun.food", "noun.group",
    "noun.location", "noun.motive", "noun.object", "noun.person", "noun.phenomenon", "noun.plant",
    "noun.possession", "noun.process", "noun.quantity", "noun.relation", "noun.shape", "noun.state",
    "noun.substance", "noun.time", "verb.body", "verb.change", "verb.cognition", "verb.communication",
    "verb.competition", "verb.consumption", "verb.contact", "verb.creation", "verb.emotion", "verb.motion",
    "verb.perception", "verb.possession", "verb.social", "verb.stative", "verb.weather", "adj.ppl")


def wordnet_synsets(root: Path = WORDNET_DIR, keep: set[tuple[str, str]] | None = None):
    """Every synset in file order (only those in `keep`, when given) as (data file, lexicographer file number
    as written, its sentences)."""
    paths = [Path(root) / f for f in WORDNET_FILES]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise CorpusError(f"WordNet is not installed ({missing[0]} is missing): run `{APT_HINT}` (Debian package "
                          "wordnet-base), or set LMSCOPE_WORDNET to a folder holding data.noun ...")
    for p in paths:
        for line in p.read_text(encoding="utf-8", errors="replace").splitlines():
            if not line[:1].isdigit() or " | " not in line:
                continue  # the licence header lines start with two spaces
            head, gloss = line.split(" | ", 1)
            f = head.split()
            lex_file, pos, lemma = f[1], f[2], f[4]
            pos = "a" if pos == "s" else pos
            if keep is not None and (pos, f[0]) not in keep:
                continue
            yield p.name, lex_file, gloss_sentences(pos, lemma, gloss.strip())


def wordnet_documents(root: Path = WORDNET_DIR, group: int = GROUP, everyday: bool = True) -> list[list[str]]:
    """Documents of GROUP consecutive synsets of one lexicographer file, in file order; everyday: only the
    synsets of `everyday_synsets` (the tagged senses)."""
    docs: list[list[str]] = []
    cur, cur_file = [], None
    for data_file, lex_file, sentences in wordnet_synsets(root, everyday_synsets(root) if everyday else None):
        if (data_file, lex_file) != cur_file or len(cur) >= group:
            if cur:
                docs.append([s for syn in cur for s in syn])
            cur, cur_file = [], (data_file, lex_file)
        cur.append(sentences)
    if cur:
        docs.append([s for syn in cur for s in syn])
    return [d for d in docs if d]


def fortune_documents(root: Path = FORTUNES_DIR) -> list[list[str]]:
    """One document per fortune; attribution lines ("-- Mark Twain") and picture-like fortunes dropped."""
    root = Path(root)
    if not root.is_dir():
        raise CorpusError(f"the fortunes are not installed ({root} is missing): run `{APT_HINT}`, or set "
                          "LMSCOPE_FORTUNES to a folder of fortune files")
    files = sorted(p for p in root.iterdir() if p.is_file() and not p.is_symlink() and "." not in p.name
                   and p.name not in SKIP_FORTUNES)
    if not files:
        raise CorpusError(f"no fortune files in {root}: run `{APT_HINT}`")
    docs = []
    for p in files:
        for fortune in re.split(r"^%\s*$", p.read_text(encoding="utf-8", errors="replace"), flags=re.M):
            lines = [ln.strip() for ln in fortune.splitlines() if ln.strip() and not ln.strip().startswith("--")]
            text = re.sub(r"\s+", " ", " ".join(lines)).strip()
            if len(text) < 20 or sum(c.isalpha() or c.isspace() for c in text) / len(text) < 0.85:
                continue
            sents = split_sentences(text)
            if sents:
                docs.append(sents)
    return docs


def english_sources(wordnet: Path = WORDNET_DIR, fortunes: Path = FORTUNES_DIR) -> dict[str, list[list[str]]]:
    return {"wordnet": wordnet_documents(wordnet), "fortunes": fortune_documents(fortunes),
            "pydoc": builtin_corpus("pydoc").documents}


def normalize(s: str) -> str:
    """The form sentences are compared in: lowercase, single spaces.

    >>> normalize("  The  Cat sat. ")
    'the cat sat.'
    """
    return re.sub(r"\s+", " ", s.lower()).strip()


def english_split(sources: dict[str, list[list[str]]] | None = None, probes: list[str] = (),
                  share: float = HELDOUT_SHARE, seed: int = SPLIT_SEED) -> EnglishSplit:
    """Hold out `share` of each source's documents (seeded); training keeps no sentence that occurs in a
    held-out document or contains a probe text (normalized). probes: texts that must not be trained on."""
    sources = english_sources() if sources is None else sources
    rng = random.Random(seed)
    train_docs, held = [], {}
    for name in sorted(sources):
        docs = sources[name]
        order = list(range(len(docs)))
        rng.shuffle(order)
        n_held = max(1, round(len(docs) * share)) if len(docs) >= 10 else 0
        held[name] = [docs[i] for i in sorted(order[:n_held])]
        train_docs += [docs[i] for i in sorted(order[n_held:])]
    held_sents = {normalize(s) for docs in held.values() for d in docs for s in d}
    probe_texts = [normalize(p) for p in probes]
    seen_docs, kept, dropped_held, dropped_probe, dropped_dup = set(), [], 0, 0, 0
    for d in train_docs:
        key = "\n".join(normalize(s) for s in d)
        if key in seen_docs:
            dropped_dup += 1
            continue
        seen_docs.add(key)
        out = []
        for s in d:
            n = normalize(s)
            if n in held_sents:
                dropped_held += 1
            elif any(p in n for p in probe_texts):
                dropped_probe += 1
            else:
                out.append(s)
        if out:
            kept.append(out)
    train_sents = {normalize(s) for d in kept for s in d}
    train_text = "\n".join(normalize(s) for d in kept for s in d)
    stats = {
        "sources": {n: {"documents": len(sources[n]), "heldout_documents": len(held[n]),
                        "words": sum(len(s.split()) for d in sources[n] for s in d)} for n in sorted(sources)},
        "train_documents": len(kept), "train_sentences": sum(map(len, kept)),
        "train_words": sum(len(s.split()) for d in kept for s in d),
        "heldout_sentences_removed_from_training": dropped_held, "probe_sentences_removed_from_training": dropped_probe,
        "duplicate_documents_removed": dropped_dup,
        "overlap_sentences": len(held_sents & train_sents),  # 0 by construction; measured, not assumed
        "probes_in_training_text": sum(p in train_text for p in probe_texts),
        "split_seed": seed, "heldout_share": share,
    }
    return EnglishSplit(kept, held, stats)


def segments(docs: list[list[str]], max_words: int, seed: int, short_share: float = 0.2) -> list[list[str]]:
    """Consecutive sentences of each document joined into BERT's multi-sentence segments: up to max_words
    words, except a seeded short_share of them whose budget is drawn from 1 .. max_words (BERT's short
    sequences). Mostly full inputs waste little on padding and train every position; the short ones keep
    one-sentence inputs familiar.

    >>> segments([["a b.", "c d.", "e f."]], max_words=100, seed=0)[0][-1].endswith("e f.")
    True
    """
    rng = random.Random(seed)

    def budget() -> int:
        return rng.randint(1, max_words) if rng.random() < short_share else max_words

    out = []
    for d in docs:
        segs, cur, left = [], [], budget()
        for s in d:
            if cur and sum(len(x.split()) for x in cur) + len(s.split()) > left:
                segs.append(" ".join(cur))
                cur, left = [], budget()
            cur.append(s)
        if cur:
            segs.append(" ".join(cur))
        out.append(segs)
    return out


__all__ = ["EnglishSplit", "english_sources", "english_split", "everyday_synsets", "fortune_documents",
           "wordnet_documents", "wordnet_synsets", "gloss_sentences", "segments", "normalize", "APT_HINT", "LEXNAMES"]
