"""Labelled text for sequence classification: a user's CSV / JSONL file or a built-in toy-world task,
checked once, split into train and held-out parts.

Formats (UTF-8):
- `.csv`: a header row naming the columns; `--text-column` (default `text`) and `--label-column`
  (default `label`) pick the two that matter.
- `.jsonl`: one JSON object per line, with those two keys.
Labels are words (`sport`, `cooking`) or whole numbers (`0`, `1`), never a mix of both.

Built-in tasks (no file needed), generated from model.train.toyworld with seeds other than the
pretraining corpus's, so none of their sentences were seen in pretraining:
- `toy-agreement`: is the verb agreement of this sentence right or wrong ("the dog near the cats runs ."
  right, "... run ." wrong);
- `toy-place`: in which of four places (garden, river, market, forest) is this short story set.

    >>> d = builtin_task("toy-agreement")
    >>> d.labels_sorted, len(d.texts) == len(d.labels)
    (['right', 'wrong'], True)
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import random
from dataclasses import dataclass
from pathlib import Path

from model.train.corpus import CorpusError, decode_text, json_lines, size_text

MAX_BYTES = 50 * 2**20  # a labelled set larger than this cannot be fine-tuned on a CPU in a session anyway
BUILTIN_TASKS = {"toy-agreement": "is the subject-verb agreement right or wrong",
                 "toy-place": "which place (garden, river, market, forest) a short story is set in"}
TASK_PLACES = ("garden", "river", "market", "forest")
MIN_EXAMPLES = 4


class DataError(CorpusError):
    """The labelled data cannot be used; the message says why."""


@dataclass
class LabelledData:
    """texts[i] has label labels[i] (a string); id2label fixes the class order (sorted labels, numbers
    numerically). fingerprint: sha256 of the examples as read (a resumed run checks it)."""

    name: str
    texts: list[str]
    labels: list[str]
    fingerprint: str

    @property
    def labels_sorted(self) -> list[str]:
        uniq = set(self.labels)
        if all(_is_number(v) for v in uniq):
            return sorted(uniq, key=int)
        return sorted(uniq)

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.labels_sorted))

    @property
    def label_ids(self) -> list[int]:
        index = {lab: i for i, lab in enumerate(self.labels_sorted)}
        return [index[v] for v in self.labels]


def _is_number(v: str) -> bool:
    return v.lstrip("-").isdigit()


def _fingerprint(texts: list[str], labels: list[str]) -> str:
    return hashlib.sha256(json.dumps([texts, labels]).encode()).hexdigest()


def check_examples(name: str, texts: list[str], labels: list[str]) -> LabelledData:
    """Validate the (text, label) pairs; raises DataError with one clear line."""
    if not texts:
        raise DataError(f"{name} has no examples")
    uniq = set(labels)
    if len(uniq) < 2:
        raise DataError(f"{name} has only one label ({labels[0]!r}): a classifier needs at least two")
    nums = sorted(v for v in uniq if _is_number(v))
    if nums and len(nums) < len(uniq):
        word = sorted(uniq - set(nums))[0]
        raise DataError(f"{name}: the labels mix numbers and words (e.g. {nums[0]!r} and {word!r}); "
                        "use one kind for every row")
    if len(texts) < MIN_EXAMPLES:
        raise DataError(f"{name} has {len(texts)} examples; fine-tuning needs at least {MIN_EXAMPLES}")
    return LabelledData(name, texts, labels, _fingerprint(texts, labels))


def _label(v, where: str) -> str:
    if isinstance(v, bool) or not isinstance(v, (str, int)):
        raise DataError(f"{where}: a label must be a word or a whole number, got {json.dumps(v)[:40]}")
    s = str(v).strip()
    if not s:
        raise DataError(f"{where}: the label is empty")
    return s


def _text(v, where: str) -> str:
    if not isinstance(v, str) or not v.strip():
        raise DataError(f"{where}: the text is empty or not a string")
    return v.strip()


def parse_labelled(raw: bytes, filename: str, text_column: str = "text", label_column: str = "label") -> LabelledData:
    """Bytes of a .csv / .jsonl file -> LabelledData (filename names it in messages and picks the format)."""
    suffix = Path(filename).suffix.lower()
    if suffix not in (".csv", ".jsonl"):
        raise DataError(f"{filename}: labelled data must be a .csv or .jsonl file")
    if not raw.strip():
        raise DataError(f"{filename} is empty")
    text = decode_text(raw, Path(filename))
    texts, labels = [], []
    if suffix == ".csv":
        try:
            rows = list(csv.reader(io.StringIO(text, newline="")))
        except csv.Error as e:
            raise DataError(f"{filename} is not valid CSV ({e})") from None
        rows = [r for r in rows if any(c.strip() for c in r)]
        if not rows:
            raise DataError(f"{filename} is empty")
        header = [c.strip() for c in rows[0]]
        for col, opt in ((text_column, "--text-column"), (label_column, "--label-column")):
            if col not in header:
                raise DataError(f"{filename} has no column {col!r} (its columns: {', '.join(header)}); "
                                f"name the right one with {opt}")
        ti, li = header.index(text_column), header.index(label_column)
        for n, r in enumerate(rows[1:], 2):
            if len(r) != len(header):
                raise DataError(f"{filename} row {n} has {len(r)} fields; the header has {len(header)}")
            texts.append(_text(r[ti], f"{filename} row {n}"))
            labels.append(_label(r[li], f"{filename} row {n}"))
    else:
        for n, obj in json_lines(text, filename, DataError):
            if not isinstance(obj, dict):
                raise DataError(f"{filename} line {n} is not a JSON object")
            for key, opt in ((text_column, "--text-column"), (label_column, "--label-column")):
                if key not in obj:
                    raise DataError(f"{filename} line {n} has no key {key!r} (its keys: {', '.join(map(str, obj))}); "
                                    f"name the right one with {opt}")
            texts.append(_text(obj[text_column], f"{filename} line {n}"))
            labels.append(_label(obj[label_column], f"{filename} line {n}"))
        # JSON can tell 1 from "1": a file with both is as mixed as one with 1 and "one"
    return check_examples(Path(filename).name, texts, labels)


def read_labelled(path: str | Path, text_column: str = "text", label_column: str = "label",
                  max_bytes: int | None = None) -> LabelledData:
    """Read and validate a labelled file; sizes are checked before reading (max_bytes: default MAX_BYTES)."""
    max_bytes = MAX_BYTES if max_bytes is None else max_bytes
    p = Path(path)
    if not p.is_file():
        raise DataError(f"no such data file: {path} (the built-in tasks are {', '.join(BUILTIN_TASKS)})")
    size = p.stat().st_size
    if size > max_bytes:
        raise DataError(f"{path} is {size_text(size)}; labelled data is limited to {size_text(max_bytes)}")
    return parse_labelled(p.read_bytes(), str(path), text_column, label_column)


def builtin_task(name: str, n: int = 400, seed: int = 4242) -> LabelledData:
    """A built-in task of about n examples (deterministic)."""
    from model.train import toyworld

    if name == "toy-agreement":
        texts, labels = [], []
        for p in toyworld.agreement_probes(n // 2, seed=seed):
            texts += [p.sentence, p.masked.replace("{mask}", p.wrong)]
            labels += ["right", "wrong"]
    elif name == "toy-place":
        rng = random.Random(seed)
        texts, labels = [], []
        docs = toyworld.generate_corpus(n * 6, seed=seed)
        for d in docs:
            place = d[0].split()[2]  # "in the PLACE there is ..."
            if place in TASK_PLACES and len(texts) < n:
                texts.append(" ".join(d[:3]))
                labels.append(place)
        order = list(range(len(texts)))
        rng.shuffle(order)
        texts, labels = [texts[i] for i in order], [labels[i] for i in order]
    else:
        raise DataError(f"unknown built-in task {name!r}; choose one of {', '.join(BUILTIN_TASKS)}, or give a .csv/.jsonl file")
    return check_examples(name, texts, labels)


def load_labelled(ref: str, text_column: str = "text", label_column: str = "label") -> LabelledData:
    """A built-in task name or a file path."""
    return builtin_task(ref) if ref in BUILTIN_TASKS else read_labelled(ref, text_column, label_column)


def split_heldout(data: LabelledData, share: float = 0.2, seed: int = 0) -> tuple[list[int], list[int]]:
    """(train indices, held-out indices): stratified, each label keeps at least one training example.

        >>> tr, ho = split_heldout(check_examples("x", list("abcdefghij"), ["p", "q"] * 5), 0.2)
        >>> len(tr), len(ho), sorted(set(tr) | set(ho)) == list(range(10))
        (8, 2, True)
    """
    rng = random.Random(seed)
    train, held = [], []
    by_label: dict[str, list[int]] = {}
    for i, lab in enumerate(data.labels):
        by_label.setdefault(lab, []).append(i)
    for lab in sorted(by_label):
        idx = by_label[lab]
        rng.shuffle(idx)
        k = min(len(idx) - 1, round(len(idx) * share))
        held += idx[:k]
        train += idx[k:]
    if not held:
        raise DataError(f"{data.name} is too small to hold any examples out; add more examples")
    return sorted(train), sorted(held)
