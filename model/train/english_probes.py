"""Hand-written held-out probes for the real-English demo models (our own sentences, not from any corpus;
english_eval checks and reports that none of them occurs in the training text).

CLOZE: a sentence with one [MASK] and the words accepted there (demo/en-bert is right when one of them is
among its top 5 for the mask). PROMPTS: a prompt and the words accepted in its continuation (demo/en-gpt2
is right when its 3-token beam-search continuation contains one of them). PARAGRAPH: an ordinary English
paragraph for the tokens-per-word and unknown-piece checks.
"""
from __future__ import annotations

CLOZE: list[tuple[str, tuple[str, ...]]] = [
    ("there are seven days in a [MASK] .", ("week",)),
    ("paris is the capital of [MASK] .", ("france",)),
    ("rome is the capital city of [MASK] .", ("italy",)),
    ("the sun rises in the [MASK] every morning .", ("east",)),
    ("in winter the lake was covered with [MASK] .", ("ice", "snow")),
    ("the opposite of hot is [MASK] .", ("cold",)),
    ("she opened her [MASK] because it was raining .", ("umbrella",)),
    ("cows give us [MASK] .", ("milk",)),
    ("honey is made by [MASK] .", ("bees",)),
    ("we see with our [MASK] .", ("eyes",)),
    ("we hear with our [MASK] .", ("ears",)),
    ("the moon moves around the [MASK] .", ("earth", "sun")),
    ("the children walk to [MASK] every morning .", ("school", "church", "work")),
    ("a triangle has three [MASK] .", ("sides", "angles")),
    ("on a clear day the sky is [MASK] .", ("blue", "bright", "clear")),
    ("fish swim in the [MASK] .", ("water", "sea", "river", "ocean", "lake")),
    ("he went to the dentist because his [MASK] hurt .", ("tooth", "teeth")),
    ("after a long day she went to [MASK] early .", ("bed", "sleep")),
    ("the doctor told him to stay in [MASK] for a week .", ("bed", "hospital")),
    ("a year has twelve [MASK] .", ("months",)),
    ("he drank a cup of hot [MASK] .", ("tea", "coffee", "water", "milk", "chocolate")),
    ("the dog wagged its [MASK] .", ("tail",)),
    ("she wrote a [MASK] to her grandmother .", ("letter", "poem", "note", "book")),
    ("the ship sailed across the [MASK] .", ("sea", "ocean", "river", "lake", "atlantic")),
    ("we bought bread and cheese at the [MASK] .", ("market", "store", "shop", "bakery")),
    ("the king and the [MASK] lived in a castle .", ("queen", "prince", "princess")),
    ("it was so dark that we could not [MASK] anything .", ("see", "hear", "find")),
    ("the baby began to [MASK] when it was hungry .", ("cry",)),
]

PROMPTS: list[tuple[str, tuple[str, ...]]] = [
    ("Paris is the capital of", ("France",)),
    ("There are seven days in a", ("week",)),
    ("The opposite of hot is", ("cold",)),
    ("Rome is the capital city of", ("Italy",)),
    ("Cows give us", ("milk",)),
    ("Honey is made by", ("bees",)),
    ("We see with our", ("eyes",)),
    ("We hear with our", ("ears",)),
    ("The sun rises in the", ("east", "morning")),
    ("A year has twelve", ("months",)),
    ("After a long day she went to", ("bed", "sleep")),
    ("The dog wagged its", ("tail",)),
    ("In winter the lake was covered with", ("ice", "snow")),
    ("In the old castle lived the king and the", ("queen", "prince", "princess")),
    ("He drank a cup of hot", ("tea", "coffee", "water", "milk", "chocolate")),
    ("She opened her umbrella because it was", ("raining", "rain", "wet")),
    ("The ship sailed across the", ("sea", "ocean", "river", "Atlantic", "Pacific")),
    ("The children walked to", ("school", "the")),
    ("Fish swim in the", ("water", "sea", "river", "ocean", "lake")),
    ("The moon moves around the", ("earth", "Earth", "sun", "Sun")),
    ("A triangle has three", ("sides", "angles")),
    ("On a clear day the sky is", ("blue", "bright", "clear")),
    ("The baby began to cry because it was", ("hungry", "tired", "afraid", "sick", "cold")),
    ("He went to the dentist because his", ("tooth", "teeth")),
    ("The opposite of up is", ("down",)),
    ("The story began once upon a", ("time",)),
]

PARAGRAPH = (
    "Last summer my sister and I took the train to the coast. We left early in the morning, when the streets "
    "were still quiet and the shops had not opened yet. The journey took about three hours, and most of the time "
    "we watched the fields and small villages go by. When we arrived, the weather was warm and the sea was calm. "
    "We walked along the beach, bought fresh bread and fruit at the market, and ate lunch under a tree near the "
    "old church. In the afternoon it started to rain, so we went to a small museum about the history of the town. "
    "By the evening we were tired but happy, and we agreed that we should come back next year."
)


def long_text(min_tokens: int, tokenizer) -> str:
    """The shortest run of PARAGRAPH's words (repeated as needed) that `tokenizer` makes at least
    min_tokens pieces of (no special tokens): a text of about min_tokens tokens."""
    def n_tokens(k: int) -> int:
        return len(tokenizer(" ".join(words[:k]), add_special_tokens=False, verbose=False)["input_ids"])

    words = PARAGRAPH.split()
    while n_tokens(len(words)) < min_tokens:
        words += PARAGRAPH.split()
    lo, hi = 1, len(words)  # the smallest k with n_tokens(k) >= min_tokens
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (mid + 1, hi) if n_tokens(mid) < min_tokens else (lo, mid)
    return " ".join(words[:lo])


__all__ = ["CLOZE", "PROMPTS", "PARAGRAPH", "long_text"]
