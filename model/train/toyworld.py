"""The toy world: a seeded English-like corpus whose structure we know, and probes labelled from it.

Sentences have subject-verb number agreement across prepositional phrases and relative clauses whose
nouns (attractors) have the other number ("the dog near the cats runs .") or the same one ("the dog near
the cat runs ."), half and half, so "the verb agrees with the nearest noun" and "the verb takes the
opposite number of the nearest noun" are both wrong half the time; pronouns that refer back to an earlier
subject, and documents that stay with one small cast in one place, introduced with "a" and then
"the", so next-sentence and sentence-order prediction are learnable. Because the generator knows the
structure, it also emits probes: which verb form is right, with no attractor in between or with one of the
same or the opposite number, in a prepositional phrase or a relative clause.

    >>> docs = generate_corpus(2, seed=0)
    >>> len(docs), all(s.endswith(" .") for d in docs for s in d)
    (2, True)
    >>> p = agreement_probes(1, seed=1)[0]
    >>> p.correct != p.wrong
    True
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path

from model.errors import InputError

# (singular, plural); the first group can be "he"/"she", the rest are "it"
PEOPLE_M = [("man", "men"), ("boy", "boys"), ("king", "kings"), ("farmer", "farmers"), ("sailor", "sailors"),
            ("baker", "bakers"), ("prince", "princes"), ("monk", "monks")]
PEOPLE_F = [("woman", "women"), ("girl", "girls"), ("queen", "queens"), ("nurse", "nurses"), ("singer", "singers"),
            ("witch", "witches"), ("princess", "princesses"), ("nun", "nuns")]
PEOPLE_N = [("teacher", "teachers"), ("student", "students"), ("doctor", "doctors"), ("child", "children"),
            ("painter", "painters"), ("pilot", "pilots"), ("writer", "writers"), ("guard", "guards"),
            ("dancer", "dancers"), ("hunter", "hunters"), ("clerk", "clerks"), ("judge", "judges")]
ANIMALS = [("dog", "dogs"), ("cat", "cats"), ("bird", "birds"), ("horse", "horses"), ("fox", "foxes"),
           ("wolf", "wolves"), ("mouse", "mice"), ("goose", "geese"), ("sheep", "sheep"), ("rabbit", "rabbits"),
           ("bear", "bears"), ("frog", "frogs"), ("owl", "owls"), ("goat", "goats"), ("duck", "ducks"),
           ("lion", "lions"), ("snake", "snakes"), ("deer", "deer"), ("pig", "pigs"), ("cow", "cows")]
# sheep and deer are the same in both numbers: they never serve as agreement subjects in probes
AMBIGUOUS = {"sheep", "deer"}
NAMES_M = ["bob", "tom", "sam", "jack", "leo", "max", "ben", "paul", "omar", "ivan", "hugo", "raj"]
NAMES_F = ["alice", "emma", "lucy", "mia", "nora", "zoe", "lena", "sara", "yuki", "rosa", "ada", "ines"]
# (3rd singular, plural)
VERBS_INTR = [("runs", "run"), ("sleeps", "sleep"), ("sings", "sing"), ("laughs", "laugh"), ("waits", "wait"),
              ("smiles", "smile"), ("swims", "swim"), ("dances", "dance"), ("jumps", "jump"), ("cries", "cry"),
              ("rests", "rest"), ("works", "work"), ("hides", "hide"), ("shouts", "shout"), ("sits", "sit"),
              ("walks", "walk"), ("plays", "play"), ("falls", "fall"), ("listens", "listen"), ("wins", "win")]
VERBS_TR = [("sees", "see"), ("likes", "like"), ("follows", "follow"), ("helps", "help"), ("chases", "chase"),
            ("watches", "watch"), ("finds", "find"), ("feeds", "feed"), ("calls", "call"), ("meets", "meet"),
            ("loves", "love"), ("fears", "fear"), ("visits", "visit"), ("paints", "paint"), ("knows", "know"),
            ("greets", "greet"), ("carries", "carry"), ("teaches", "teach"), ("pushes", "push"), ("trusts", "trust")]
ADJS = ["big", "small", "old", "young", "happy", "quiet", "brave", "clever", "tired", "green", "red", "tall",
        "lazy", "angry", "kind", "proud", "shy", "loud", "gentle", "hungry", "clumsy", "wise", "sleepy", "curious"]
PREPS = ["near", "behind", "with", "beside", "under", "above", "around", "beyond"]
ADVS = ["quickly", "slowly", "often", "rarely", "quietly", "loudly", "again", "today", "happily", "alone"]
PLACES = ["garden", "river", "market", "forest", "castle", "school", "harbor", "village", "meadow", "bridge",
          "kitchen", "library", "tower", "farm", "station", "island"]
OBJECTS = [("ball", "balls"), ("apple", "apples"), ("box", "boxes"), ("song", "songs"), ("letter", "letters"),
           ("key", "keys"), ("boat", "boats"), ("cake", "cakes"), ("flower", "flowers"), ("book", "books")]
ALL_NOUNS = PEOPLE_M + PEOPLE_F + PEOPLE_N + ANIMALS
# Bumped whenever the text a seed produces changes (cached corpora are keyed by it).
# 2: "sheep"/"deer" no longer appear as attractors. 3: attractors have the same number as the subject half
# the time (before, always the opposite one: a shortcut that scored 100%).
GENERATOR_VERSION = 3
# The seed of the built-in training corpus; probes refuse it so they are always held out.
TRAIN_SEED = 0


@dataclass
class Entity:
    """A member of a document's cast. noun is (singular, plural) or a name; number 0 = singular, 1 = plural."""

    words: tuple[str, str] | str
    number: int
    pronoun: str  # he / she / it / they
    mentioned: bool = False

    def np(self, rng: random.Random, adj: str | None) -> str:
        if isinstance(self.words, str):
            return self.words
        noun = self.words[self.number]
        det = "the" if self.mentioned else ("a" if self.number == 0 else "some")
        if det == "a" and adj is None and noun[0] in "aeiou":
            det = "an"
        if det == "a" and adj is not None and adj[0] in "aeiou":
            det = "an"
        return " ".join(w for w in (det, adj, noun) if w)


def _pronoun(noun: tuple[str, str] | str, number: int) -> str:
    if number == 1:
        return "they"
    if isinstance(noun, str):
        return "he" if noun in NAMES_M else "she"
    if noun in PEOPLE_M:
        return "he"
    if noun in PEOPLE_F:
        return "she"
    return "it"


def _other_np(rng: random.Random, number: int) -> str:
    """A noun phrase for an attractor with a given number ("the cats"). Never "sheep"/"deer": their
    number is invisible, so they could not act as an attractor (swapped for the next noun, no extra draw)."""
    noun = rng.choice(ALL_NOUNS)
    if noun[0] in AMBIGUOUS:
        noun = ALL_NOUNS[(ALL_NOUNS.index(noun) + 1) % len(ALL_NOUNS)]
    adj = rng.choice(ADJS) if rng.random() < 0.3 else None
    return " ".join(w for w in ("the", adj, noun[number]) if w)


def _verb_phrase(rng: random.Random, number: int) -> tuple[str, str, str]:
    """Returns (verb, wrong verb, rest of the verb phrase)."""
    if rng.random() < 0.5:
        v = rng.choice(VERBS_INTR)
        rest = rng.choice([rng.choice(ADVS), "", f"{rng.choice(PREPS)} the {rng.choice(PLACES)}"])
    else:
        v = rng.choice(VERBS_TR)
        obj = rng.choice(OBJECTS + ALL_NOUNS)
        rest = f"the {obj[rng.randrange(2)]}"
    return v[number], v[1 - number], rest


@dataclass
class Clause:
    """A generated sentence with its agreement facts. subject_index / verb_index are word positions."""

    words: list[str]
    subject_index: int
    verb_index: int
    correct: str
    wrong: str
    attractor: bool
    attractor_kind: str  # "preposition" ("near the cats"), "relative" ("that sees the cats") or ""
    attractor_number: str  # "same" / "opposite" as the subject, "none" without attractor

    @property
    def text(self) -> str:
        return " ".join(self.words)


def _sentence(rng: random.Random, ent: Entity, *, use_pronoun: bool, attractor: bool | None = None) -> Clause:
    """One sentence about ent. attractor: None = at random (45%, never after a pronoun), True / False = forced."""
    words: list[str] = []
    adj = rng.choice(ADJS) if rng.random() < 0.4 and not isinstance(ent.words, str) else None
    subj = ent.pronoun if use_pronoun else ent.np(rng, adj)
    words += subj.split()
    subject_index = len(words) - 1
    kind, attractor_number = "", "none"
    r = rng.random()
    if not use_pronoun and (r < 0.45 if attractor is None else attractor):
        same = rng.random() < 0.5  # the attractor's number: the subject's own or the other one, half and half
        attractor_number = "same" if same else "opposite"
        number = ent.number if same else 1 - ent.number
        if rng.random() < 0.6:  # prepositional phrase: "near the cats"
            kind = "preposition"
            words += [rng.choice(PREPS)] + _other_np(rng, number).split()
        else:  # relative clause: "that sees the cats"
            v = rng.choice(VERBS_TR)
            words += ["that", v[ent.number]] + _other_np(rng, number).split()
            kind = "relative"
    verb, wrong, rest = _verb_phrase(rng, ent.number)
    verb_index = len(words)
    words += [verb] + rest.split() + ["."]
    ent.mentioned = True
    return Clause(words, subject_index, verb_index, verb, wrong, bool(kind), kind, attractor_number)


def _cast(rng: random.Random, size: int) -> list[Entity]:
    cast = []
    for _ in range(size):
        if rng.random() < 0.3:
            name = rng.choice(NAMES_M + NAMES_F)
            cast.append(Entity(name, 0, _pronoun(name, 0)))
        else:
            noun = rng.choice(ALL_NOUNS)
            while noun[0] in AMBIGUOUS:
                noun = rng.choice(ALL_NOUNS)
            number = int(rng.random() < 0.4)
            cast.append(Entity(noun, number, _pronoun(noun, number)))
    return cast


def _document(rng: random.Random) -> list[str]:
    place = rng.choice(PLACES)
    cast = _cast(rng, rng.randint(2, 3))
    n = rng.randint(3, 8)
    sentences = [f"in the {place} there {'is' if cast[0].number == 0 else 'are'} {cast[0].np(rng, None)} ."]
    cast[0].mentioned = True
    last = cast[0]
    for _ in range(n - 1):
        ent = last if rng.random() < 0.5 else rng.choice(cast)
        use_pronoun = ent is last and ent.mentioned and rng.random() < 0.5
        sentences.append(_sentence(rng, ent, use_pronoun=use_pronoun).text)
        last = ent
    return sentences


def generate_corpus(n_documents: int, seed: int) -> list[list[str]]:
    """n_documents documents of 3-8 sentences each, deterministic for a seed."""
    if n_documents < 0:
        raise InputError(f"n_documents must be >= 0, got {n_documents}")
    rng = random.Random(seed)
    return [_document(rng) for _ in range(n_documents)]


def write_corpus(path: str | Path, n_documents: int, seed: int) -> Path:
    """Write the txt format: one sentence per line, a blank line between documents."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # per process: concurrent writers never share a file
    tmp.write_text("\n\n".join("\n".join(d) for d in generate_corpus(n_documents, seed)) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


@dataclass(frozen=True)
class AgreementProbe:
    """One subject-verb agreement test.

    prefix:  the sentence up to (not including) the verb, for causal models.
    masked:  the whole sentence with the verb replaced by "{mask}", for masked models.
    correct / wrong: the verb form that agrees / the other form.
    subject_index, verb_index: word positions in the full sentence; attractor: a noun stands between
    subject and verb, in a prepositional phrase ("the dog near the cats") or a relative clause ("the dog
    that sees the cats"), named by attractor_kind ("" without attractor); attractor_number says whether
    that noun has the subject's number ("same"), the other one ("opposite"), or there is none ("none").
    kind: the probe's kind as one label, e.g. "same/preposition", "opposite/relative" or "none".
    """

    sentence: str
    prefix: str
    masked: str
    correct: str
    wrong: str
    subject_index: int
    verb_index: int
    attractor: bool
    attractor_kind: str
    attractor_number: str = "none"

    @property
    def kind(self) -> str:
        return f"{self.attractor_number}/{self.attractor_kind}" if self.attractor else "none"


PROBE_KINDS = ("none", "same/preposition", "same/relative", "opposite/preposition", "opposite/relative")


def agreement_probes(n: int, seed: int = 12345, attractor_share: float = 0.7,
                     exclude: set[str] | frozenset[str] = frozenset()) -> list[AgreementProbe]:
    """n held-out probes, deterministic for a seed, which must not be the training corpus's TRAIN_SEED.
    About attractor_share of them put a noun between subject and verb, of the subject's number or the
    other one, half and half. A sentence in exclude (e.g. every training sentence) is skipped, so the
    probes can be made disjoint from a training set.

        >>> p = agreement_probes(1, seed=3)[0]
        >>> p.masked.replace("{mask}", p.correct) == p.sentence, p.sentence.startswith(p.prefix + " " + p.correct)
        (True, True)
    """
    if seed == TRAIN_SEED:
        raise InputError(f"probe seed {seed} is the training corpus seed; use another seed so probes are held out")
    if not 0 <= attractor_share <= 1:
        raise InputError(f"attractor_share must be in [0, 1], got {attractor_share}")
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        ent = _cast(rng, 1)[0]
        ent.mentioned = rng.random() < 0.5
        c = _sentence(rng, ent, use_pronoun=False, attractor=rng.random() < attractor_share)
        if c.text in exclude:
            continue
        w = c.words
        out.append(AgreementProbe(
            sentence=c.text, prefix=" ".join(w[:c.verb_index]),
            masked=" ".join(w[:c.verb_index] + ["{mask}"] + w[c.verb_index + 1:]),
            correct=c.correct, wrong=c.wrong, subject_index=c.subject_index, verb_index=c.verb_index,
            attractor=c.attractor, attractor_kind=c.attractor_kind, attractor_number=c.attractor_number,
        ))
    return out


def vocabulary() -> set[str]:
    """Every word the generator can emit (for tests and tokenizer checks)."""
    words = {"in", "the", "there", "is", "are", "a", "an", "some", "that", ".", "he", "she", "it", "they"}
    for pair in ALL_NOUNS + OBJECTS + VERBS_INTR + VERBS_TR:
        words.update(pair)
    words.update(NAMES_M + NAMES_F + ADJS + PREPS + ADVS + PLACES)
    return words
