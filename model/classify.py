"""Sequence classifiers made by `lmscope finetune`: load one, and predict labels with probabilities.

    >>> clf = load_classifier("runs/bert-topics")                     # doctest: +SKIP
    >>> classify(clf, ["the striker scored a goal"])[0][:1]           # doctest: +SKIP
    [Prediction(label='sport', prob=0.97...)]

The text is tokenized exactly as in fine-tuning (`encode_texts`: the tokenizer's special tokens, cut to
the positions the model has), so `classify` gives the probabilities transformers'
AutoModelForSequenceClassification gives for the same text. Torch is imported only when a model loads.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model.errors import InputError, LmscopeError

CLASSIFIER_SUFFIX = "ForSequenceClassification"
MAX_TEXTS = 256  # texts per classify call (the CLI takes one, the app a few typed ones)


@dataclass(frozen=True)
class Prediction:
    label: str
    prob: float

    def to_json(self) -> dict:
        return {"label": self.label, "prob": self.prob}


@dataclass
class Classifier:
    """A loaded classifier: shared read-only (the model is in eval mode, no gradients)."""

    name: str
    path: str
    model: Any  # a transformers *ForSequenceClassification
    tokenizer: Any
    labels: list[str]  # id order
    max_tokens: int


def max_tokens(config) -> int:
    """How many tokens a model of this config reads (RoBERTa keeps two positions for its padding offset)."""
    n = getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None) or 512
    return int(n) - 2 if config.model_type == "roberta" else int(n)


def prepare_tokenizer(tok, config) -> None:
    """Give a causal tokenizer a padding token (its end-of-text token, as GPT-2 classifiers do) and write
    it into the config: the classifier reads the last non-padding position."""
    if tok.pad_token is None:
        if tok.eos_token is None:
            raise LmscopeError("the tokenizer has neither a padding nor an end-of-text token to pad batches with")
        tok.pad_token = tok.eos_token
    config.pad_token_id = tok.pad_token_id


def encode_texts(tok, texts: list[str], limit: int) -> dict:
    """texts -> {"input_ids", "attention_mask"} (batch, longest) tensors, right-padded, cut at `limit`."""
    enc = tok(list(texts), truncation=True, max_length=limit, padding=True, return_tensors="pt",
              return_token_type_ids=False)
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


_CACHE: dict[str, Classifier] = {}
_LOCK = threading.Lock()


def load_classifier(ref: str, restrict: bool = False) -> Classifier:
    """A classifier directory (or listed name), loaded once per process. Raises ModelLoadError when it is
    not a sequence classifier lmscope can load (safetensors only, no remote code)."""
    from model.errors import ModelLoadError
    from model.modelfiles import check_weights, read_config
    from model.registry import resolve

    path, name = resolve(ref, restrict)
    if path.suffix == ".onnx":
        raise ModelLoadError(f"{name} is an ONNX export; classify runs the fine-tuned model directory itself")
    cfg = read_config(path)
    archs = cfg.get("architectures") or []
    if not any(str(a).endswith(CLASSIFIER_SUFFIX) for a in archs):
        raise ModelLoadError(f"{name} is not a sequence classifier (its head: {archs[0] if archs else 'none'}); "
                             "make one with `lmscope finetune BASE --data FILE --out DIR`")
    key = str(path)
    with _LOCK:
        if key in _CACHE:
            return _CACHE[key]
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        check_weights(path)
        try:
            tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
            model = AutoModelForSequenceClassification.from_pretrained(
                str(path), local_files_only=True, use_safetensors=True, dtype=torch.float32)
        except Exception as e:
            raise ModelLoadError(f"cannot load {name}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        model.eval()
        prepare_tokenizer(tok, model.config)
        labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
        clf = Classifier(name, key, model, tok, labels, max_tokens(model.config))
        _CACHE[key] = clf
        return clf


def probabilities(clf: Classifier, texts: list[str]):
    """(len(texts), num_labels) float64 numpy array of class probabilities."""
    import torch

    if not texts:
        raise InputError("no text to classify")
    if len(texts) > MAX_TEXTS:
        raise InputError(f"{len(texts)} texts at once; classify takes at most {MAX_TEXTS}")
    if any(not t.strip() for t in texts):
        raise InputError("the text is empty")
    with torch.no_grad():
        logits = clf.model(**encode_texts(clf.tokenizer, texts, clf.max_tokens)).logits
    return torch.softmax(logits.double(), dim=-1).numpy()


def classify(clf: Classifier, texts: list[str]) -> list[list[Prediction]]:
    """For each text, every label with its probability, most probable first."""
    out = []
    for row in probabilities(clf, texts):
        order = sorted(range(len(row)), key=lambda i: -row[i])
        out.append([Prediction(clf.labels[i], float(row[i])) for i in order])
    return out


def is_classifier_dir(path: str | Path) -> bool:
    """Whether a model directory's config names a sequence-classification head (no torch needed)."""
    import json

    try:
        cfg = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(cfg, dict) and any(str(a).endswith(CLASSIFIER_SUFFIX) for a in cfg.get("architectures") or [])
