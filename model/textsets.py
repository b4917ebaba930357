"""Text collections for the projector and corpus search: built-in sets, an uploaded file, and each token's label.

Built in:
    toyworld  sentences of the toy world (model/train/toyworld.py, seed 1: not the training seed); each
              token is labelled by its word class there (person, animal, verb, place, ...).
    english   a small hand-written set of everyday English, 8 sentences on each of 6 topics; label = topic.
    pydoc     sentences of CPython's help() topics (model/train/corpus.py); label = the topic's number.
    wordnet   WORDNET_TEXTS sentences drawn (seeded) from WordNet's glosses and examples as the en-* demo
              models read them (model/train/english.py; Debian's wordnet-base); label = the synset's
              lexicographer file (noun.animal, verb.motion, ...). Large enough for a 100k-token index.
An upload is UTF-8 text, one text per line, optionally `label<TAB>text`.

    >>> s = builtin("english"); len(s.texts), s.labels[0]
    (48, 'animals')
"""
from __future__ import annotations

import functools
import hashlib
import json
import random
from dataclasses import dataclass

from model.errors import LmscopeError

BUILTIN = ("toyworld", "english", "pydoc", "wordnet")
MAX_UPLOAD_BYTES = 5_000_000
TOYWORLD_DOCS = 400
TOYWORLD_SEED = 1
WORDNET_TEXTS = 15_000  # 244,085 tokens with the en-* demo tokenizer (enough for a 200k-token index)
WORDNET_SEED = 1

ENGLISH = {
    "animals": ["The cat sleeps on the warm windowsill all afternoon.", "A dog barked at the mail carrier this morning.",
                "Horses need fresh water and plenty of hay.", "The owl hunts mice in the dark field.",
                "Our rabbit hides under the sofa when guests arrive.", "Elephants remember the paths to distant rivers.",
                "The fox slipped through a gap in the fence.", "Bees carry pollen from flower to flower."],
    "food": ["She baked fresh bread for breakfast.", "The soup needs more salt and a little pepper.",
             "We ate rice with grilled vegetables for dinner.", "He peeled an orange and shared it with his sister.",
             "The cheese was sharp and a little salty.", "Fresh strawberries taste best in early summer.",
             "The cook stirred the sauce until it thickened.", "A cup of hot tea warms you on a cold day."],
    "weather": ["Heavy rain flooded the streets last night.", "The sky cleared and the sun came out at noon.",
                "A cold wind blew snow across the road.", "Thunder rolled over the hills before the storm.",
                "The forecast says it will be foggy tomorrow morning.", "It was so hot that the tar on the road melted.",
                "Frost covered the grass at dawn.", "A rainbow appeared after the shower."],
    "sport": ["The striker scored twice in the second half.", "She ran the marathon in under four hours.",
              "The team trained every morning before the final.", "He served an ace to win the match.",
              "The swimmer broke the national record.", "Our coach told us to pass the ball more often.",
              "The referee blew the whistle and the game began.", "They cycled up the mountain in the rain."],
    "music": ["The orchestra played a symphony by Beethoven.", "She practises the piano for an hour every day.",
              "The drummer kept a steady beat through the song.", "He sang an old folk song by the fire.",
              "The concert hall was full for the opening night.", "A violin solo opened the second movement.",
              "The band tuned their guitars before the show.", "Her new album has ten quiet songs."],
    "computers": ["The program crashed when the file was missing.", "He installed the update and restarted the laptop.",
                  "The server answers thousands of requests a second.", "She wrote a function that sorts the list.",
                  "The network was slow because of a broken cable.", "Save your work before you close the editor.",
                  "The database stores every order in a table.", "A bug in the loop made the test fail."],
}


class TextSetError(LmscopeError):
    """The collection cannot be read; the message says why."""


@dataclass(frozen=True)
class TextSet:
    """texts and one label per text; `word_classes` (word -> class) labels tokens by their word instead.
    fingerprint: sha256 of the content (cache keys)."""

    name: str
    texts: tuple[str, ...]
    labels: tuple[str, ...]
    fingerprint: str
    word_classes: dict | None = None

    def label(self, text_index: int, word: str) -> str:
        """The label of a token that is (part of) `word` in text `text_index`."""
        if self.word_classes is not None:
            return self.word_classes.get(word.lower(), "other")
        return self.labels[text_index]


def _make(name: str, texts: list[str], labels: list[str], word_classes: dict | None = None) -> TextSet:
    raw = json.dumps([texts, labels, word_classes], sort_keys=True).encode()
    return TextSet(name, tuple(texts), tuple(labels), hashlib.sha256(raw).hexdigest()[:16], word_classes)


def toyworld_classes() -> dict[str, str]:
    """Word -> class in the toy world's vocabulary."""
    from model.train import toyworld as tw

    classes: dict[str, str] = {}
    groups = {"person": tw.PEOPLE_M + tw.PEOPLE_F + tw.PEOPLE_N, "animal": tw.ANIMALS, "object": tw.OBJECTS,
              "verb": tw.VERBS_INTR + tw.VERBS_TR}
    for cls, pairs in groups.items():
        for pair in pairs:
            classes.update({w: cls for w in pair})
    for cls, words in {"name": tw.NAMES_M + tw.NAMES_F, "adjective": tw.ADJS, "preposition": tw.PREPS,
                       "adverb": tw.ADVS, "place": tw.PLACES}.items():
        classes.update({w: cls for w in words})
    classes.update({w: "pronoun" for w in ("he", "she", "it", "they")})
    classes.update({w: "determiner" for w in ("the", "a", "an", "some")})
    return classes


@functools.lru_cache(maxsize=len(BUILTIN))
def builtin(name: str) -> TextSet:
    """A built-in set (built once per process: the sets are immutable)."""
    if name == "toyworld":
        from model.train.toyworld import generate_corpus

        texts = [s for doc in generate_corpus(TOYWORLD_DOCS, TOYWORLD_SEED) for s in doc]
        return _make("toyworld", texts, ["toyworld"] * len(texts), toyworld_classes())
    if name == "english":
        pairs = [(t, topic) for topic, ts in ENGLISH.items() for t in ts]
        return _make("english", [t for t, _ in pairs], [lab for _, lab in pairs])
    if name == "pydoc":
        from model.train.corpus import builtin_corpus

        docs = builtin_corpus("pydoc").documents
        pairs = [(s, f"topic {i}") for i, d in enumerate(docs) for s in d]
        return _make("pydoc", [t for t, _ in pairs], [lab for _, lab in pairs])
    if name == "wordnet":
        return _wordnet()
    raise TextSetError(f"unknown text set {name!r}: choose {', '.join(BUILTIN)}, or give a file")


def _wordnet() -> TextSet:
    from model.train import english
    from model.train.corpus import CorpusError

    names = english.LEXNAMES
    try:
        pairs = [(s, names[int(lex)] if lex.isdigit() and int(lex) < len(names) else f"lexfile {lex}")
                 for _, lex, sentences in english.wordnet_synsets(english.WORDNET_DIR) for s in sentences]
    except CorpusError as e:
        raise TextSetError(str(e)) from None
    picked = random.Random(WORDNET_SEED).sample(pairs, min(WORDNET_TEXTS, len(pairs)))  # every topic early on
    return _make("wordnet", [t for t, _ in picked], [lab for _, lab in picked])


def from_bytes(name: str, raw: bytes) -> TextSet:
    """An uploaded file: UTF-8, one text per line, optionally `label<TAB>text`; blank lines skipped."""
    if len(raw) > MAX_UPLOAD_BYTES:
        raise TextSetError(f"{name} is {len(raw) / 1e6:.1f} MB; the limit is {MAX_UPLOAD_BYTES / 1e6:.0f} MB")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise TextSetError(f"{name} is not valid UTF-8 (byte {e.start})") from None
    texts, labels = [], []
    for line in text.splitlines():
        label, _, body = line.partition("\t") if "\t" in line else ("", "", line)
        if body.strip():
            texts.append(body.strip())
            labels.append(label.strip() or "(none)")
    if not texts:
        raise TextSetError(f"{name} has no text: write one text per line (optionally label<TAB>text)")
    return _make(name, texts, labels)


def load(ref: str) -> TextSet:
    """A built-in name or a file path."""
    if ref in BUILTIN:
        return builtin(ref)
    try:
        with open(ref, "rb") as f:
            raw = f.read(MAX_UPLOAD_BYTES + 1)
    except OSError as e:
        raise TextSetError(f"cannot read {ref}: {e.strerror or e}") from None
    return from_bytes(ref, raw)
